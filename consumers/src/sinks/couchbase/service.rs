//! The network side of the Couchbase sink: connecting to the cluster with deadlines.
//!
//! The SDK retries `Cluster::connect` forever when nobody answers, and a KV call against a missing
//! collection never returns; every call here therefore runs under a deadline so a wrong endpoint
//! becomes an error message instead of a hung worker. The sink ([`super::sink`]) and the set-up
//! ([`super::setup`](mod@super::setup)) get their bucket and collection handles from here.

use std::future::Future;
use std::time::Duration;

use couchbase::authenticator::PasswordAuthenticator;
use couchbase::bucket::Bucket;
use couchbase::cluster::Cluster;
use couchbase::collection::Collection;
use couchbase::options::cluster_options::ClusterOptions;
use sluice_core::connections::CouchbaseConnection;

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
            Error::NotCouchbase { .. } | Error::MissingCollection { .. } => SinkError::Config(self.to_string()),
        }
    }
}

impl Couchbase {
    /// Connects and opens the configured bucket.
    pub async fn connect(conn: &CouchbaseConnection) -> Result<Self, Error> {
        let auth = PasswordAuthenticator::new(&conn.username, conn.password.expose());
        let opts = ClusterOptions::new(auth.into());
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
