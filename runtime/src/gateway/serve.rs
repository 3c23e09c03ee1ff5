//! Accepting HTTP connections within limits.
//!
//! `axum::serve` accepts every connection and waits on it forever: 20,000
//! idle sockets, or a few hundred that send their headers one byte at a
//! time, were enough to make legitimate requests time out. This accept
//! loop serves the same router with hyper directly, so that:
//!
//! - a connection is refused at once (a short 503/429, then closed) when
//!   its address already holds `max_connections_per_ip`, or when the
//!   gateway holds `max_connections` and none of them can make room; at
//!   the global cap the oldest connection that has not yet sent a request
//!   is closed for the newcomer, so idle sockets cannot starve real clients;
//! - request headers must arrive within `header_read_timeout` (hyper's
//!   timer, which also bounds how long a keep-alive connection waits for
//!   its next request);
//! - a client that stops reading what the gateway sends is disconnected
//!   after `idle_timeout` ([`StallGuard`]), and one that stops sending the
//!   body it announced gets a 408 after the same time (`body.rs`).
//!
//! The bookkeeping is one small map per gateway; a refusal costs one
//! accept, one non-blocking write and one close.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::logging::Throttle;

/// The connection limits of one gateway (from `limits:` in its config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_total: usize,
    /// 0: no per-address cap.
    pub max_per_ip: usize,
}

/// What the accept loop did, for operators and tests.
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted and served since start.
    pub accepted: u64,
    /// Refused because the gateway was full of busy connections.
    pub refused_full: u64,
    /// Refused because their address had too many open connections.
    pub refused_per_ip: u64,
    /// Closed to make room, never having sent a request.
    pub evicted_idle: u64,
    /// Closed because their request headers did not arrive in time.
    pub header_timeouts: u64,
    /// Closed because the client stopped reading.
    pub stalled: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused_full: AtomicU64,
    refused_per_ip: AtomicU64,
    evicted_idle: AtomicU64,
    header_timeouts: AtomicU64,
    stalled: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One open connection as the registry sees it.
struct Slot {
    ip: IpAddr,
    /// Set once the connection has sent a whole request head; until then
    /// it may be closed to make room for a newcomer.
    served: Arc<AtomicBool>,
    close: CancellationToken,
}

/// Open connections, in accept order, and how many each address holds.
/// Entries exist only for open connections, so it never outgrows
/// `max_connections`.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Slot>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&slot.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&slot.ip);
            }
        }
        Some(slot)
    }
}

/// Why a connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("every connection slot is busy")]
    Full,
    #[error("too many connections from this address")]
    PerIp,
}

impl Refusal {
    /// What the refused client reads before the close: enough for an HTTP
    /// client to report something better than a reset.
    fn response(self) -> &'static [u8] {
        match self {
            Refusal::Full => {
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            }
            Refusal::PerIp => {
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            }
        }
    }
}

/// The gateway's open connections and the limits on them. Shared by the
/// accept loop and every connection task.
pub(crate) struct Connections {
    limits: ConnLimits,
    registry: Mutex<Registry>,
    counters: Counters,
    refusals_logged: Throttle,
}

/// A connection's place in the registry; dropping it frees the place.
pub(crate) struct Ticket {
    id: u64,
    conns: Arc<Connections>,
    served: Arc<AtomicBool>,
    close: CancellationToken,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.conns.lock().remove(self.id);
    }
}

impl Connections {
    pub(crate) fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            registry: Mutex::default(),
            counters: Counters::default(),
            refusals_logged: Throttle::new(Duration::from_secs(10)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            open: self.lock().open.len(),
            accepted: load(&c.accepted),
            refused_full: load(&c.refused_full),
            refused_per_ip: load(&c.refused_per_ip),
            evicted_idle: load(&c.evicted_idle),
            header_timeouts: load(&c.header_timeouts),
            stalled: load(&c.stalled),
        }
    }

    /// Admits a connection from `ip`, making room at the global cap by
    /// closing the oldest connection that has not sent a request yet.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = ip.to_canonical();
        let mut reg = self.lock();
        let from_ip = reg.per_ip.get(&ip).copied().unwrap_or(0);
        if self.limits.max_per_ip > 0 && from_ip >= self.limits.max_per_ip {
            bump(&self.counters.refused_per_ip);
            return Err(Refusal::PerIp);
        }
        if reg.open.len() >= self.limits.max_total.max(1) {
            let idle = reg
                .open
                .iter()
                .find(|(_, s)| !s.served.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            match idle.and_then(|id| reg.remove(id)) {
                Some(victim) => {
                    victim.close.cancel();
                    bump(&self.counters.evicted_idle);
                }
                None => {
                    bump(&self.counters.refused_full);
                    return Err(Refusal::Full);
                }
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let served = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        reg.open.insert(
            id,
            Slot {
                ip,
                served: served.clone(),
                close: close.clone(),
            },
        );
        *reg.per_ip.entry(ip).or_default() += 1;
        bump(&self.counters.accepted);
        Ok(Ticket {
            id,
            conns: self.clone(),
            served,
            close,
        })
    }

    fn refuse(&self, stream: TcpStream, ip: IpAddr, why: Refusal) {
        // Best effort and never waits: a fresh socket's send buffer is empty.
        let _ = stream.try_write(why.response());
        drop(stream);
        if let Some(held_back) = self.refusals_logged.allow() {
            tracing::warn!(
                %ip,
                reason = %why,
                held_back,
                limits = ?self.limits,
                "HTTP connection refused"
            );
        }
    }
}

/// Connections the kernel may hold for the accept loop. The loop refuses
/// cheaply, so a deep queue turns a burst into fast refusals; a shallow one
/// (tokio's default is 1024) makes the kernel drop connections silently,
/// legitimate ones included. Linux caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the gateway's listening socket.
pub(crate) fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restarted gateway can bind while old
    // connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Accepts and serves connections on `listener` until `shutdown`; then
/// asks every open connection to finish its request and waits for them.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    conns: Arc<Connections>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let accept_errors = Throttle::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: let the
                    // existing connections finish before trying again.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) {
                        if let Some(held_back) = accept_errors.allow() {
                            tracing::warn!(error = %e, held_back, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        // As axum::serve does: without it Nagle's algorithm holds the small
        // writes of an SSE stream for a delayed ACK (~40 ms per answer).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        match conns.admit(peer.ip()) {
            Ok(ticket) => {
                tracker.spawn(serve_one(
                    stream,
                    peer,
                    router.clone(),
                    ticket,
                    shutdown.clone(),
                ));
            }
            Err(why) => conns.refuse(stream, peer.ip(), why),
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Serves one connection until it ends, is evicted, or the gateway stops.
/// Each request carries the peer's address as axum's `ConnectInfo` (the
/// login throttle counts by it).
async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    ticket: Ticket,
    shutdown: CancellationToken,
) {
    let conns = ticket.conns.clone();
    let limits = conns.limits;
    let io = TokioIo::new(StallGuard::new(stream, limits.idle_timeout, conns.clone()));
    let served = ticket.served.clone();
    let service = TowerToHyperService::new(router.map_request(
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            served.store(true, Ordering::Relaxed);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        bump(&conns.counters.header_timeouts);
                    }
                    tracing::trace!(error = %e, "HTTP connection ended");
                }
                break;
            }
            // Evicted to make room: dropping the connection closes it.
            _ = ticket.close.cancelled() => break,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A socket whose writes may not stay blocked for longer than `limit`:
/// a client that stops reading (its receive window full) gets an error
/// instead of holding the connection, its task and its queued response
/// forever. Reads are not timed here (waiting for a request is hyper's
/// header timeout; a stalled body is `body.rs`'s).
pub(crate) struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    /// Armed when a write could not proceed; cleared by any progress.
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    conns: Arc<Connections>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration, conns: Arc<Connections>) -> Self {
        StallGuard {
            inner,
            limit,
            stalled_since: None,
            conns,
        }
    }

    /// After a write returned `Pending`: still pending, or the client has
    /// not read anything for `limit`.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                bump(&self.conns.counters.stalled);
                // The client cannot be told (it reads nothing); the
                // operator can. A stream's client resumes with
                // `Last-Event-ID` when it comes back.
                tracing::warn!(
                    peer = ?self.inner.peer_addr().ok(),
                    "closed an HTTP connection whose client read nothing for {limit:?} \
                     (a stalled event stream or download; limits.idle_timeout_seconds)"
                );
                // Reset rather than close: a graceful close would leave
                // what is queued for this client (up to the kernel's send
                // buffer, megabytes) held until TCP gives up on it, per
                // cut connection. A zero linger makes the close send RST
                // and free it at once; the client gets "connection reset".
                if let Err(e) = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO))
                {
                    tracing::debug!(error = %e, "cannot set SO_LINGER on a stalled connection");
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.pending_write(cx),
            ready => {
                self.stalled_since = None;
                ready
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(max_total: usize, max_per_ip: usize) -> Arc<Connections> {
        Connections::new(ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_total,
            max_per_ip,
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let c = conns(100, 2);
        let a = c.admit(ip(1)).unwrap();
        let _b = c.admit(ip(1)).unwrap();
        assert_eq!(c.admit(ip(1)).err(), Some(Refusal::PerIp));
        assert!(c.admit(ip(2)).is_ok());
        drop(a);
        assert!(c.admit(ip(1)).is_ok());
        let s = c.stats();
        assert_eq!(s.refused_per_ip, 1);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let c = conns(3, 0);
        let busy = c.admit(ip(1)).unwrap();
        busy.served.store(true, Ordering::Relaxed);
        let idle_old = c.admit(ip(2)).unwrap();
        let idle_new = c.admit(ip(3)).unwrap();
        let newcomer = c.admit(ip(4)).unwrap();
        assert!(idle_old.close.is_cancelled(), "the oldest idle one goes");
        assert!(!busy.close.is_cancelled() && !idle_new.close.is_cancelled());
        assert_eq!(c.stats().open, 3);
        // When every connection is busy, the newcomer is refused.
        for t in [&idle_new, &newcomer] {
            t.served.store(true, Ordering::Relaxed);
        }
        assert_eq!(c.admit(ip(5)).err(), Some(Refusal::Full));
        // The evicted ticket's drop does not free anyone else's place.
        drop(idle_old);
        assert_eq!(c.stats().open, 3);
        assert_eq!(c.stats().evicted_idle, 1);
        assert_eq!(c.stats().refused_full, 1);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let c = conns(100, 1);
        let _a = c.admit(ip(1)).unwrap();
        let mapped = match ip(1) {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        assert_eq!(c.admit(mapped).err(), Some(Refusal::PerIp));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The client connects and never reads.
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let c = conns(10, 0);
        let mut guard = StallGuard::new(server, Duration::from_millis(300), c.clone());
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let err = loop {
            use tokio::io::AsyncWriteExt;
            if let Err(e) = guard.write_all(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(c.stats().stalled, 1);
    }
}
