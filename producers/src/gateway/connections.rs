//! Accepting connections: how many at once, how long a client may take to send its headers, and
//! closing them all on shutdown.
//!
//! The gateway runs its own accept loop (rather than `axum::serve`, which offers neither knob)
//! over hyper's HTTP/1 connection builder:
//!
//! - **TLS** (when configured): the handshake comes first, on the accepted socket, and must end
//!   within the header-read timeout too (a client that connects and never says hello holds a
//!   connection slot like one that never sends headers). A failed handshake (a plain-HTTP
//!   client, an untrusting one) is the client's business: logged at DEBUG, the socket closed.
//! - **Header-read timeout** ([`GatewayConfig::header_read_timeout`]): from the moment the
//!   gateway waits for a request's headers (a new connection, or a kept-alive one after its
//!   previous answer) to the end of those headers. It is one deadline, not an idle timer, so a
//!   client trickling a byte a second is cut off like a silent one; hyper then closes the
//!   connection. It also bounds how long an idle keep-alive connection is kept.
//! - **Request timeout** ([`GatewayConfig::request_timeout`]): from the end of the headers to
//!   the answer, body included (the handlers' deadline, 408 while the body is still arriving;
//!   a tower timeout two seconds later is the backstop). Together the two bound a request.
//! - **Write stall** (the request timeout again): an answer whose write makes no progress that
//!   long (the client stopped reading) closes the connection; see [`super::write_stall`].
//! - **Connection limit** ([`GatewayConfig::max_connections`]): at the limit the gateway stops
//!   accepting, so further connections *wait* in the kernel's listen backlog and are served, in
//!   order, as open ones close (the header-read timeout guarantees that idle or slow ones do),
//!   rather than being refused. Waiting is counted (`sluice_gateway_connection_limit_waits_total`)
//!   and logged at WARN once per episode; `sluice_gateway_connections_open` is the gauge.
//!
//! On shutdown the loop stops accepting, every connection finishes its request in flight
//! (idle ones close at once), and [`serve_connections`] returns when the last one closed.
//!
//! [`GatewayConfig::header_read_timeout`]: super::GatewayConfig::header_read_timeout
//! [`GatewayConfig::request_timeout`]: super::GatewayConfig::request_timeout
//! [`GatewayConfig::max_connections`]: super::GatewayConfig::max_connections

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::metrics::names;
use super::tls::TlsCertificate;
use super::write_stall::WriteStall;

/// The limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) write_stall_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` (over TLS with `tls`'s current pair) until `stop`, then waits for every open
/// connection to close.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    tls: Option<Arc<TlsCertificate>>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    // Semaphore permits are u32; the configuration is validated to fit.
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS).min(u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let open = metrics::gauge!(names::CONNECTIONS_OPEN);
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics::counter!(names::CONNECTION_LIMIT_WAITS).increment(1);
                tracing::warn!(
                    max_connections = max,
                    "connection limit reached: new connections wait in the listen backlog until one closes"
                );
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => break,
                    },
                    () = stop.cancelled() => break,
                }
            }
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        open.increment(1.0);
        let (app, stop, open, tls) = (app.clone(), stop.clone(), open.clone(), tls.clone());
        tokio::spawn(async move {
            serve_socket(tcp, tls, app, limits, stop).await;
            open.decrement(1.0);
            drop::<OwnedSemaphorePermit>(permit);
        });
    }
    drop(listener);
    // Every permit back means every connection closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// One accepted socket: the TLS handshake first when there is an acceptor, then HTTP.
async fn serve_socket(
    tcp: TcpStream,
    tls: Option<Arc<TlsCertificate>>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    // Answers are small and latency is the point: no Nagle delay.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    // Under TLS, a client that stopped reading stalls the socket's writes: the stall is watched
    // below the TLS layer, where the bytes wait.
    let io = WriteStall::new(tcp, limits.write_stall_timeout);
    let Some(tls) = tls else {
        return serve_one(io, app, limits, stop).await;
    };
    // The pair current now: a reload during the handshake applies to the next connection.
    let handshake = tokio::time::timeout(limits.header_read_timeout, tls.acceptor().accept(io));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(timeout = ?limits.header_read_timeout, "TLS handshake timed out");
                return;
            }
        },
        () = stop.cancelled() => return,
    };
    serve_one(stream, app, limits, stop).await;
}

/// One connection, until the client or the header-read timeout closes it, or shutdown does.
async fn serve_one<S>(io: S, app: Router, limits: Limits, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let io = TokioIo::new(io);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // A client that went away or was too slow: its business, not an operator's.
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// After a failed `accept`: a connection reset before it was accepted is nothing; anything
/// else (out of file descriptors) is logged and waited out, so the loop does not spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(e.kind(), K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s (out of file descriptors? raise `ulimit -n`)");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
