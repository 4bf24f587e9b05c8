//! A TCP proxy in front of one of the rig's real servers: a test points a client at it, then
//! takes the server "down" (nothing listens there) or brings it back — a network fault, not a
//! stand-in for the server.

use std::net::TcpListener as StdListener;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Forwards every connection to `port` to `upstream` (`host:port`), until `stop` is cancelled.
pub async fn proxy(port: u16, upstream: String, stop: CancellationToken) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the proxy's port is free");
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// `host:port` of an `http://host:port[/…]` URL.
pub fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}
