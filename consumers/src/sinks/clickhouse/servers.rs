//! Several ClickHouse servers behind one client: `SLUICE_CLICKHOUSE_URL` may list the servers of a
//! cluster (`http://ch-1:8123,http://ch-2:8123`), and a server that is down is skipped.
//!
//! The client keeps one URL; its host is a name only [`Servers`] resolves: to the addresses of
//! every listed server, in order. The HTTP connector tries them in that order for each new
//! connection, so requests go to the first server that accepts one, and move on when it goes
//! away (its pooled connections fail, the sink retries, the next connection reaches the next
//! server). Any server of a cluster takes any insert and any DDL `ON CLUSTER`: the
//! `Distributed` tables send rows to their shards.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// The host name of the client's URL when it has several servers (never looked up elsewhere).
pub(super) const HOST: &str = "sluice-clickhouse-servers";

/// The listed servers' hosts and ports, in order: a resolver for the HTTP connector.
#[derive(Debug, Clone)]
pub(super) struct Servers(Arc<Vec<(String, u16)>>);

impl Servers {
    /// The servers of a comma-separated `http://host:port` list; `None` for a single URL (used as
    /// it is). Each must be `http://host:port`, with no path: one database path for all of them.
    pub(super) fn parse(urls: &str) -> Result<Option<Self>, String> {
        if !urls.contains(',') {
            return Ok(None);
        }
        let servers = urls
            .split(',')
            .map(|url| {
                let url = url.trim();
                let authority = url
                    .strip_prefix("http://")
                    .map(|rest| rest.trim_end_matches('/'))
                    .filter(|rest| !rest.contains('/'))
                    .ok_or_else(|| format!("{url:?} in the list of ClickHouse servers is not http://host:port"))?;
                let (host, port) = authority
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse().ok()?)))
                    .ok_or_else(|| format!("{url:?} in the list of ClickHouse servers names no port"))?;
                Ok((host.to_owned(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(Self(Arc::new(servers))))
    }

    /// The URL the client is given.
    pub(super) fn url() -> String {
        format!("http://{HOST}")
    }
}

impl tower::Service<Name> for Servers {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Every listed server's addresses, in list order; a name that does not resolve is left out
    /// (its server counts as down), unless none does.
    fn call(&mut self, _: Name) -> Self::Future {
        let servers = self.0.clone();
        Box::pin(async move {
            let mut addrs = Vec::new();
            let mut last_error = None;
            for (host, port) in servers.iter() {
                match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(found) => addrs.extend(found),
                    Err(e) => last_error = Some(e),
                }
            }
            match (addrs.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                _ => Ok(addrs.into_iter()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_url_is_used_as_it_is_and_a_list_is_read_in_order() {
        assert!(Servers::parse("http://127.0.0.1:8123").expect("one").is_none());
        let servers = Servers::parse("http://127.0.0.1:28123, http://ch-2:8123/").expect("list").expect("several");
        assert_eq!(*servers.0, [("127.0.0.1".to_owned(), 28123), ("ch-2".to_owned(), 8123)]);
        for bad in ["http://a:1,https://b:2", "http://a:1,http://b", "http://a:1,http://b:2/db"] {
            assert!(Servers::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resolves_every_server_in_order() {
        use tower::Service as _;
        let mut servers = Servers::parse("http://127.0.0.1:2,http://127.0.0.1:1").expect("list").expect("several");
        let name: Name = HOST.parse().expect("name");
        let addrs: Vec<u16> = servers.call(name).await.expect("resolved").map(|a| a.port()).collect();
        assert_eq!(addrs, [2, 1]);
    }
}
