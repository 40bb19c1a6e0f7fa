//! Client-port connections: an accept loop that can cut any single TCP connection.
//!
//! Why: moving a client off during a drain must look like a transport loss to the
//! client (it then reconnects through the load balancer). socketioxide only offers a
//! namespace disconnect (`io server disconnect`, after which the official client does
//! NOT reconnect) or closing every socket at once. So each socket.io session is mapped
//! to the TCP connections it uses, and the drain cuts those.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::Request};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

use crate::config::HTTP1_MAX_BUF_BYTES;

/// Put into every request's extensions: cancelling `token` cuts the request's TCP connection.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub token: CancellationToken,
    /// False once the TCP stream is dropped (the connection is really gone, upgraded
    /// WebSockets included).
    alive: Arc<AtomicBool>,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// socket.io session id → the connections it was seen on, and the sessions already
/// moved off (their later requests are refused, so a long-polling client that was
/// between two polls when its connection was cut leaves too).
#[derive(Default)]
pub struct ConnRegistry {
    by_sid: Mutex<HashMap<String, Vec<ConnHandle>>>,
    /// When each was moved off: kept [`MOVED_OFF_KEPT`] (a rebalance moves clients off a
    /// node that lives on, so the set must not grow for ever).
    moved_off: Mutex<HashMap<String, std::time::Instant>>,
}

/// Longer than a long-poll plus a ping interval: a cut session's last late request
/// is refused in that time, and the client has reconnected elsewhere.
pub const MOVED_OFF_KEPT: std::time::Duration = std::time::Duration::from_secs(120);

impl ConnRegistry {
    pub fn attach(&self, sid: &str, conn: &ConnHandle) {
        if let Ok(mut map) = self.by_sid.lock() {
            let conns = map.entry(sid.to_owned()).or_default();
            conns.retain(|c| c.alive.load(Ordering::Relaxed));
            if !conns.iter().any(|c| c.id == conn.id) {
                conns.push(conn.clone());
            }
        }
    }

    pub fn forget(&self, sid: &str) {
        if let Ok(mut map) = self.by_sid.lock() {
            map.remove(sid);
        }
    }

    /// Moves a session off: cuts every connection it was seen on and refuses its
    /// later requests.
    pub fn cut(&self, sid: &str) {
        if let Ok(mut moved) = self.moved_off.lock() {
            let now = std::time::Instant::now();
            // Every 1024th entry, not on each: a drain cuts thousands in a row.
            if moved.len() % 1024 == 1023 {
                moved.retain(|_, at| now.duration_since(*at) < MOVED_OFF_KEPT);
            }
            moved.insert(sid.to_owned(), now);
        }
        let conns = self.by_sid.lock().ok().and_then(|mut m| m.remove(sid));
        for conn in conns.into_iter().flatten() {
            conn.token.cancel();
        }
    }

    pub fn is_moved_off(&self, sid: &str) -> bool {
        self.moved_off.lock().is_ok_and(|m| m.contains_key(sid))
    }
}

/// A TCP stream that fails every read and write once its token is cancelled.
struct Cuttable {
    inner: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    alive: Arc<AtomicBool>,
    /// This connection's admission: given back when the stream is dropped (an upgraded
    /// WebSocket keeps it for its whole life).
    _admitted: OwnedSemaphorePermit,
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

impl Cuttable {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by drain",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Admission control of the client port.
#[derive(Clone)]
pub struct Admission {
    pub permits: Arc<Semaphore>,
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop_accepting` fires; every connection is a
/// child of `cut_all`, so cancelling it closes everything that is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    admission: Admission,
    stop_accepting: CancellationToken,
    cut_all: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = stop_accepting.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At the cap, close at once: the descriptor is free again for the admin port,
        // Redis and the clients already here.
        let Ok(admitted) = admission.permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let token = cut_all.child_token();
        let alive = Arc::new(AtomicBool::new(true));
        let handle = ConnHandle {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            token: token.clone(),
            alive: alive.clone(),
        };
        let stream = Cuttable {
            inner: stream,
            cut: Box::pin(token.cancelled_owned()),
            alive,
            _admitted: admitted,
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            handle,
            admission.header_timeout,
        ));
    }
}

/// One admitted connection: waits for its first byte, then serves HTTP/1 (upgrades
/// included) with `handle` in every request, until it ends or is cut.
async fn serve_connection(
    stream: Cuttable,
    router: Router,
    handle: ConnHandle,
    header_timeout: Duration,
) {
    // hyper's header timeout starts with the first byte: a connection that never
    // sends one is closed here instead of holding its descriptor forever.
    // (`peek`, not `readable`: a new socket may report readiness spuriously.)
    let mut first = [0u8; 1];
    if !matches!(
        tokio::time::timeout(header_timeout, stream.inner.peek(&mut first)).await,
        Ok(Ok(_))
    ) {
        return;
    }
    let token = handle.token.clone();
    let service = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(handle.clone());
        req
    });
    let mut builder = Builder::new(TokioExecutor::new());
    // Without a timer hyper applies no header timeout: a slowloris head (a byte a
    // minute) held its descriptor forever.
    builder
        .http1()
        .max_buf_size(HTTP1_MAX_BUF_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    // An upgraded connection (WebSocket) outlives this future: its stream was
    // handed over and is still cut through the same token.
    tokio::select! {
        _ = connection => {}
        _ = token.cancelled() => {}
    }
}
