//! Accepting connections, with the limits a server facing the internet needs before any
//! request is read: a cap on open connections, a cap per address, and a deadline for a
//! request's headers (a slowloris client that trickles one header line every few seconds is
//! closed when it runs out). axum's own `serve` has none of these, so connections are
//! served here with hyper's HTTP/1 builder, as axum does, plus the limits.
//!
//! Shutdown: `stop` is cancelled, the listener stops accepting, every connection finishes
//! the request it is on (hyper's graceful shutdown) and [`serve`] returns. Websockets are
//! upgraded connections outside hyper's tracking; `Api::stop` closes those.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// The limits on connections (part of `[api.limits]`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub header_read_timeout: Duration,
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Open`], given back when it ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Slot {
    /// A place for a connection from `address`, or `None` when a cap is reached.
    fn take(open: &Arc<Mutex<Open>>, address: IpAddr, limits: &ConnectionLimits) -> Option<Slot> {
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = o.by_address.get(&address).copied().unwrap_or(0);
        if o.total >= limits.max_connections || mine >= limits.max_connections_per_address {
            return None;
        }
        o.total += 1;
        o.by_address.insert(address, mine + 1);
        Some(Slot { open: open.clone(), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.total -= 1;
        if let Some(n) = o.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                o.by_address.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets open requests finish
/// (for at most `drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(&open, peer.ip(), &limits) else {
            crate::metrics::connection_refused();
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // A router is always ready; each request gets its own handle to it.
            router.clone().call(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!("shutdown: some connections were still busy after {drain:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_hold_both_caps_and_come_back() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_address: 2,
            header_read_timeout: Duration::from_secs(1),
        };
        let open = Arc::new(Mutex::new(Open::default()));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = Slot::take(&open, a, &limits).unwrap();
        let _a2 = Slot::take(&open, a, &limits).unwrap();
        assert!(Slot::take(&open, a, &limits).is_none(), "two per address");
        let _b1 = Slot::take(&open, b, &limits).unwrap();
        assert!(Slot::take(&open, b, &limits).is_none(), "three in all");
        drop(a1);
        assert!(Slot::take(&open, b, &limits).is_some(), "a closed connection gives its place back");
        drop(_a2);
        assert!(!open.lock().unwrap().by_address.contains_key(&a), "no entry kept for a gone address");
    }
}
