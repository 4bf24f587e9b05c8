//! The network side of the Couchbase sink: connecting to the cluster with deadlines.
//!
//! The SDK retries `Cluster::connect` forever when nobody answers, and a KV call against a missing
//! collection never returns; every call here therefore runs under a deadline so a wrong endpoint
//! becomes an error message instead of a hung worker. The sink ([`super::sink`]) and the set-up
//! ([`super::setup`](mod@super::setup)) get their bucket and collection handles from here.

use std::future::Future;
use std::time::Duration;

use couchbase::authenticator::{Authenticator, CertificateAuthenticator, PasswordAuthenticator};
use couchbase::bucket::Bucket;
use couchbase::cluster::Cluster;
use couchbase::collection::Collection;
use couchbase::options::cluster_options::{ClusterOptions, TlsOptions};
use sluice_core::connections::CouchbaseConnection;
use sluice_producers::tls;

use super::Error;
use crate::sink::SinkError;
use crate::worker::ready::StartupError;

/// How long connecting may take before we call the cluster unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one key-value operation may take. A healthy cluster answers in milliseconds; past
/// this the server is overloaded or the collection is gone, and the batch is retried later.
pub const KV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one management call (list or create scopes and collections) may take.
pub const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected cluster and the bucket projections write to.
pub struct Couchbase {
    /// The SDK's cluster handle.
    pub cluster: Cluster,
    /// The configured bucket.
    pub bucket: Bucket,
    bucket_name: String,
}

impl std::fmt::Debug for Couchbase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Couchbase").field("bucket", &self.bucket_name).finish_non_exhaustive()
    }
}

/// Runs a Couchbase call with a deadline, naming the operation when it expires.
pub async fn deadline<T>(
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = couchbase::error::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(|source| Error::Couchbase { what, source }),
        Err(_) => Err(Error::Timeout { what, after: limit }),
    }
}

/// The first host of a `couchbases://` connection string and its KV TLS port (11207 unless given).
pub fn first_tls_host(connstr: &str) -> Option<(String, u16)> {
    let first = connstr.strip_prefix("couchbases://")?.split(['/', '?', ',']).next()?.trim();
    tls::host_port(first, 11207)
}

/// A TLS handshake with the cluster's first node: refused certificates fail here, clearly.
/// A node that does not answer is left to the SDK (and the worker's wait for an absent sink).
async fn check_certificate(conn: &CouchbaseConnection) -> Result<(), String> {
    let Some((host, port)) = first_tls_host(&conn.connstr) else { return Ok(()) };
    match tls::probe(&host, port, &conn.tls, "Couchbase", CONNECT_TIMEOUT).await {
        Err(reason) if tls::is_certificate_refusal(&reason) => Err(reason),
        _ => Ok(()),
    }
}

/// At start-up (connect, open the bucket, read the live pointer, check the collection): a
/// cluster that does not answer in time or is busy is waited for; credentials, a bucket, scope
/// or collection it does not have stop the worker.
impl StartupError for Error {
    fn at_startup(&self) -> SinkError {
        use couchbase::error::ErrorKind as K;
        match self {
            Error::Unreachable { source, .. } => match source.at_startup() {
                SinkError::Config(_) => SinkError::Config(self.to_string()),
                SinkError::Transient(_) => SinkError::Transient(self.to_string()),
            },
            Error::Timeout { .. } => SinkError::Transient(self.to_string()),
            Error::Couchbase { source, .. } => match source.kind() {
                K::AuthenticationFailure
                | K::BucketNotFound
                | K::ScopeNotFound
                | K::CollectionNotFound
                | K::InvalidArgument(_)
                | K::FeatureNotAvailable(_)
                | K::UnsupportedOperation => SinkError::Config(self.to_string()),
                _ => SinkError::Transient(self.to_string()),
            },
            Error::NotCouchbase { .. } | Error::MissingCollection { .. } | Error::Tls { .. } => {
                SinkError::Config(self.to_string())
            }
        }
    }
}

impl Couchbase {
    /// Connects and opens the configured bucket.
    pub async fn connect(conn: &CouchbaseConnection) -> Result<Self, Error> {
        let tls_error = |reason| Error::Tls { connstr: conn.connstr.clone(), reason };
        if conn.uses_tls() {
            // The SDK answers an untrusted certificate with a connect timeout after retrying; one
            // handshake of our own, with the same roots, names the cause at once.
            check_certificate(conn).await.map_err(tls_error)?;
        }
        let auth: Authenticator = match (&conn.tls.cert_file, &conn.tls.key_file) {
            (Some(cert), Some(key)) => CertificateAuthenticator::new(
                tls::read_certs(cert, "Couchbase").map_err(tls_error)?,
                tls::read_key(key, "Couchbase").map_err(tls_error)?,
            )
            .into(),
            _ => PasswordAuthenticator::new(&conn.username, conn.password.expose()).into(),
        };
        let mut opts = ClusterOptions::new(auth);
        if let Some(ca) = &conn.tls.ca_file {
            let roots = tls::read_certs(ca, "Couchbase").map_err(tls_error)?;
            opts = opts.tls_options(TlsOptions::new().add_ca_certificates(roots));
        }
        let cluster = deadline("connect", CONNECT_TIMEOUT, Cluster::connect(&conn.connstr, opts))
            .await
            .map_err(|e| Error::Unreachable { connstr: conn.connstr.clone(), source: Box::new(e) })?;
        let bucket = cluster.bucket(&conn.bucket);
        // Opening a bucket happens in the background; waiting here turns a wrong bucket name into
        // an error at start-up rather than a hang on the first write.
        deadline("open bucket", CONNECT_TIMEOUT, bucket.wait_until_ready(None))
            .await
            .map_err(|e| Error::Unreachable { connstr: conn.connstr.clone(), source: Box::new(e) })?;
        Ok(Self { cluster, bucket, bucket_name: conn.bucket.clone() })
    }

    /// The name of the configured bucket.
    pub fn bucket_name(&self) -> &str {
        &self.bucket_name
    }

    /// A bucket by name (`None`: the configured one), opened and ready. Another bucket than the
    /// configured one is opened here, under the connect deadline.
    pub async fn open_bucket(&self, name: Option<&str>) -> Result<Bucket, Error> {
        match name {
            None => Ok(self.bucket.clone()),
            Some(name) if name == self.bucket_name => Ok(self.bucket.clone()),
            Some(name) => {
                let bucket = self.cluster.bucket(name);
                deadline("open bucket", CONNECT_TIMEOUT, bucket.wait_until_ready(None)).await?;
                Ok(bucket)
            }
        }
    }

    /// Whether `scope.collection` exists in `bucket`, from the bucket's collection manifest.
    pub async fn collection_exists(bucket: &Bucket, scope: &str, collection: &str) -> Result<bool, Error> {
        let scopes = deadline("list scopes", MANAGEMENT_TIMEOUT, bucket.collections().get_all_scopes(None)).await?;
        Ok(scopes.iter().filter(|s| s.name() == scope).any(|s| s.collections().iter().any(|c| c.name() == collection)))
    }

    /// A collection of the bucket (`_default` scope and collection when both are `None`).
    pub fn collection(&self, scope: Option<&str>, collection: Option<&str>) -> Collection {
        match (scope, collection) {
            (None, None) => self.bucket.default_collection(),
            (scope, collection) => {
                self.bucket.scope(scope.unwrap_or("_default")).collection(collection.unwrap_or("_default"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_tls_host;

    #[test]
    fn the_first_tls_host_of_a_connection_string() {
        assert_eq!(
            first_tls_host("couchbases://127.0.0.1:40699,127.0.0.1:41731"),
            Some(("127.0.0.1".to_owned(), 40699))
        );
        assert_eq!(
            first_tls_host("couchbases://cb.example.com/bucket?x=1"),
            Some(("cb.example.com".to_owned(), 11207))
        );
        assert_eq!(first_tls_host("couchbases://[::1]:11207"), Some(("::1".to_owned(), 11207)));
        assert_eq!(first_tls_host("couchbase://plain"), None);
    }
}
