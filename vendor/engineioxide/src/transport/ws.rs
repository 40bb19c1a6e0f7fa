//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, PacketBuf, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket,
    body::ResponseBody,
    config::EngineIoConfig,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    queue::{Batch, QueueRx},
    socket::InternalRx,
    transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    let ws_key = parts
        .headers
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();
    // The connection's task lives as long as the WebSocket: it captures only what it
    // needs (the upgrade future, the request head boxed), not the whole request.
    let on_upgrade = hyper::upgrade::on(req);
    let parts = Box::new(parts);

    tokio::spawn(async move {
        let conn = on_upgrade.await.map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            Ok(conn) => on_init(engine.clone(), conn, protocol, sid, parts).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match res {
            Ok(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    // Boxed: an async fn keeps its arguments for its whole life, and this one lives
    // as long as the connection.
    req_data: Box<Parts>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: the handshake states are large and needed only for the first frames,
    // while the connection's task lives as long as the WebSocket.
    let (socket, ws) = Box::pin(open(&engine, conn, protocol, sid, *req_data)).await?;
    // A session born on this WebSocket beats its heartbeat in the connection's own
    // task; an upgraded one keeps the heartbeat task its polling handshake started
    // (as does protocol v3, where the client pings).
    let heartbeat = (sid.is_none() && socket.protocol == ProtocolVersion::V4)
        .then(|| Heartbeat::new(engine.config.ping_interval, engine.config.ping_timeout));
    if sid.is_none() && heartbeat.is_none() {
        socket
            .clone()
            .spawn_heartbeat(engine.config.ping_interval, engine.config.ping_timeout);
    }

    match serve(&engine, &socket, Box::new(Connection { ws, heartbeat })).await {
        Ended::Error(e) => {
            let reason =
                Option::<DisconnectReason>::from(&e).unwrap_or(DisconnectReason::TransportError);

            #[cfg(feature = "tracing")]
            tracing::debug!("error when handling packet: {:?}", e);
            engine.close_session(socket.id, reason);
        }
        Ended::TransportClosed => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "ws transport was closed");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
        }
        Ended::SessionClosed => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "socket is closing");
        }
    }
    Ok(())
}

/// Opens the WebSocket: a new session (OPEN packet sent) or the upgrade of a polling one.
async fn open<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(Arc<Socket<H::Data>>, WebSocketStream<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    let opened = if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            // Already upgraded, or another WebSocket is upgrading it: refused at once
            // (the connection is dropped), so the real upgrade is not held up.
            Some(socket) if socket.is_ws() || !socket.claim_upgrade() => {
                return Err(Error::MultipleWebsocketRequests);
            }
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                (socket, ws)
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        (socket, ws)
    };
    Ok(opened)
}

/// What the connection loop owns, boxed: an async fn keeps its arguments for its
/// whole life next to the locals it moves them into.
struct Connection<S> {
    ws: WebSocketStream<S>,
    heartbeat: Option<Heartbeat>,
}

/// How a WebSocket connection's loop ended.
enum Ended {
    /// The client closed the WebSocket or sent a Close packet.
    TransportClosed,
    /// The session was closed by the server (its cancellation token).
    SessionClosed,
    Error(Error),
}

/// The v4 heartbeat of a session born on its WebSocket: a PING every `interval`
/// (the first one `interval` after the handshake), a PONG due within `timeout`.
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    /// Set while a PONG is awaited.
    pong_due: Option<Instant>,
}

impl Heartbeat {
    fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            next_ping: Instant::now() + interval,
            pong_due: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.pong_due.unwrap_or(self.next_ping)
    }

    fn pong(&mut self) {
        self.pong_due = None;
    }
}

/// Drives one WebSocket connection in one task: reads the client's frames into
/// the handler, writes the session's queued packets, and beats the heartbeat.
/// (Upstream used three tasks and a split stream per connection; one task is
/// ~6 KB less per idle connection.) Writes are fed, then flushed once the queue
/// is drained.
async fn serve<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    mut conn: Box<Connection<S>>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Connection { ws, heartbeat } = &mut *conn;
    // A polling request that was in progress during the upgrade may still hold the lock.
    let Some(mut internal_rx) = socket
        .internal_rx
        .lock()
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before starting the ws loop");
        return Ended::SessionClosed;
    };
    let InternalRx { buffered_rx, .. } = &mut *internal_rx;
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    let beat = tokio::time::sleep_until(heartbeat.as_ref().map_or_else(far, Heartbeat::deadline));
    tokio::pin!(beat);
    let window = engine.config.ws_write_window;
    // With a write window: when this connection last wrote (a batch queued within the
    // window after it waits for the window's end), and the batch held meanwhile (boxed:
    // only while one is held, so an idle connection's task stays small).
    let mut last_write: Option<Instant> = None;
    let mut held: Option<Pin<Box<Held>>> = None;

    let ended = loop {
        // One select decides, then at most one write: every write and flush of the
        // loop is the same await point, which keeps this task's state small.
        let step = tokio::select! {
            biased;
            _ = socket.cancellation_token.cancelled() => Step::End(Ended::SessionClosed),
            msg = ws.next() => match msg {
                None => Step::End(Ended::TransportClosed),
                Some(Err(e)) => Step::End(Ended::Error(e.into())),
                Some(Ok(msg)) => match on_frame(engine, socket, msg) {
                    Ok(Frame::Continue) => Step::Idle,
                    Ok(Frame::Pong) => {
                        if let Some(h) = heartbeat.as_mut() {
                            h.pong();
                            beat.as_mut().reset(h.deadline());
                        }
                        Step::Idle
                    }
                    Ok(Frame::Close) => Step::End(Ended::TransportClosed),
                    Err(e) => Step::End(Ended::Error(e)),
                },
            },
            batch = buffered_rx.next_batch(), if held.is_none() => match batch {
                Some(Batch::Queued(batch)) => match hold_until(last_write, window) {
                    None => Step::Write(batch, Drain::Queue),
                    Some(until) => {
                        held = Some(Box::pin(Held {
                            batch,
                            until: tokio::time::sleep_until(until),
                        }));
                        Step::Idle
                    }
                },
                Some(Batch::Volatile(batch)) => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(sid = ?socket.id, "ws volatile flush: {} packets", batch.len());
                    Step::Write(batch, Drain::No)
                }
                None => Step::End(Ended::SessionClosed),
            },
            _ = window_end(&mut held), if held.is_some() => match held.take() {
                // What was queued during the window goes out with the held batch.
                Some(mut h) => Step::Write(std::mem::take(h.as_mut().project().batch), Drain::Queue),
                None => Step::Idle,
            },
            _ = &mut beat, if heartbeat.is_some() => match heartbeat.as_mut() {
                Some(h) if h.pong_due.is_some() => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(sid = ?socket.id, "heartbeat timeout");
                    Step::End(Ended::Error(Error::HeartbeatTimeout))
                }
                Some(h) => {
                    #[cfg(feature = "tracing")]
                    tracing::trace!(sid = ?socket.id, "emitting ping");
                    let now = Instant::now();
                    h.pong_due = Some(now + h.timeout);
                    // Like `tokio::time::interval`, the schedule does not drift with late pongs.
                    while h.next_ping <= now {
                        h.next_ping += h.interval;
                    }
                    beat.as_mut().reset(h.deadline());
                    Step::Write(smallvec![Packet::Ping], Drain::No)
                }
                None => Step::Idle,
            },
        };
        match step {
            Step::Idle => {}
            Step::End(ended) => break ended,
            Step::Write(batch, drain) => {
                let more = match drain {
                    Drain::Queue => Some(&mut *buffered_rx),
                    Drain::No => None,
                };
                Box::pin(write(socket, ws, batch, more)).await;
                if !window.is_zero() {
                    last_write = Some(Instant::now());
                }
            }
        }
    };

    if matches!(ended, Ended::SessionClosed) {
        // What the session queued before it was closed still goes out (a socket.io
        // DISCONNECT, the engine CLOSE), as it did with a writer task of its own: the
        // loop's select takes the cancellation first. A batch held by the write window
        // was queued first.
        if let Some(mut h) = held.take() {
            let batch = std::mem::take(h.as_mut().project().batch);
            Box::pin(write(socket, ws, batch, None)).await;
        }
        while let Ok(batch) = buffered_rx.try_recv() {
            Box::pin(write(socket, ws, batch, None)).await;
        }
    }
    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");
    ws.flush().await.ok();
    ws.close(None).await.ok();
    ended
}

pin_project_lite::pin_project! {
    /// A queued batch held back by the write window, and the window's end.
    struct Held {
        batch: PacketBuf,
        #[pin]
        until: tokio::time::Sleep,
    }
}

/// When a batch queued now may be written: `None` at once — no window, or the last
/// write is at least a window ago (a socket that receives little pays no latency) —
/// else at the end of the window that began with the last write (a busy socket writes
/// at most once per window, everything queued meanwhile in that write).
fn hold_until(last_write: Option<Instant>, window: Duration) -> Option<Instant> {
    let until = last_write? + window;
    (!window.is_zero() && until > Instant::now()).then_some(until)
}

/// Completes when the held batch's write window ends (never without one).
async fn window_end(held: &mut Option<Pin<Box<Held>>>) {
    match held.as_mut() {
        Some(h) => h.as_mut().project().until.await,
        None => std::future::pending().await,
    }
}

/// What a client frame asks of the connection loop.
enum Frame {
    Continue,
    /// A PONG (v4) or PING (v3) answered the heartbeat.
    Pong,
    Close,
}

/// Hands one client frame to the handler.
fn on_frame<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<Frame, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                Ok(Frame::Close)
            }
            Packet::Pong | Packet::Ping => {
                // For a heartbeat task of its own (upgraded sessions, protocol v3).
                socket.heartbeat_received();
                Ok(Frame::Pong)
            }
            Packet::Message(msg) => {
                engine.handler.on_message(msg, socket.clone());
                Ok(Frame::Continue)
            }
            p => Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
            Ok(Frame::Continue)
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            Ok(Frame::Close)
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
            Ok(Frame::Continue)
        }
    }
}

/// What one turn of the connection loop does after its select.
enum Step {
    Idle,
    Write(PacketBuf, Drain),
    End(Ended),
}

/// Whether a write also takes everything else already queued.
enum Drain {
    Queue,
    No,
}

/// Feeds `batch` (and, with `more`, every batch queued meanwhile) to the WebSocket,
/// then flushes once. Send errors are logged: the read side notices a dead socket.
async fn write<D, S>(
    socket: &Socket<D>,
    ws: &mut WebSocketStream<S>,
    batch: PacketBuf,
    mut more: Option<&mut QueueRx>,
) where
    D: Default + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut batch = Some(batch);
    while let Some(current) = batch.take() {
        for packet in current {
            let msg = match packet {
                Packet::Message(msg) if msg.len() >= DIRECT_WRITE_MIN => {
                    if let Err(_e) = write_shared_text(ws, &msg).await {
                        #[cfg(feature = "tracing")]
                        tracing::debug!("[sid={}] error sending packet: {}", socket.id, _e);
                    }
                    continue;
                }
                // A Noop Packet maybe sent by the server to upgrade from a polling connection
                // In the case that the packet was not poll in time it will remain in the buffer and therefore
                // it should be discarded here
                Packet::Noop => continue,
                Packet::Binary(bin) | Packet::BinaryV3(bin) => {
                    if socket.protocol == ProtocolVersion::V3 {
                        // v3 protocol requires packet type as the first byte.
                        // This requires a new buffer. This is OK as it is only for the V3 protocol.
                        let mut buff = Vec::with_capacity(bin.len() + 1);
                        buff.push(0x04);
                        buff.extend(bin);
                        Message::Binary(buff.into())
                    } else {
                        Message::Binary(bin)
                    }
                }
                packet => Message::Text(String::from(packet).into()),
            };
            if let Err(_e) = ws.feed(msg).await {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] error sending packet: {}", socket.id, _e);
            }
        }
        batch = more.as_mut().and_then(|rx| rx.try_recv().ok());
    }
    ws.flush().await.ok();
}

/// Messages from this size on are written from the shared packet bytes instead of
/// through tungstenite, which copies every message into its connection's write buffer:
/// a broadcast of one large message to N sockets held N copies until each client read
/// it (900 KB to 1,000 clients: +860 MB).
const DIRECT_WRITE_MIN: usize = 16 * 1024;

/// Writes one Engine.IO message packet (`4` + `msg`) as an unmasked text frame straight to
/// the stream: the frame header and the `4` in one small write, the payload from the
/// packet's reference-counted bytes, which every recipient of a broadcast shares.
/// tungstenite's buffer is flushed first so frames stay in order; it tracks nothing per
/// data frame, so a frame written around it is invisible to it.
async fn write_shared_text<S>(ws: &mut WebSocketStream<S>, msg: &Str) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.flush().await.map_err(std::io::Error::other)?;
    let mut head = text_frame_head(msg.len() + 1);
    head.push(b'4');
    let stream = ws.get_mut();
    stream.write_all(&head).await?;
    stream.write_all(msg.as_bytes()).await?;
    stream.flush().await
}

/// RFC 6455 §5.2 header of a final, unmasked (server-to-client) text frame (room for
/// one more byte: the Engine.IO packet type).
fn text_frame_head(len: usize) -> smallvec::SmallVec<[u8; 11]> {
    let mut head = smallvec![0x81];
    match len {
        0..=125 => head.push(len as u8),
        126..=0xFFFF => {
            head.push(126);
            head.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            head.push(127);
            head.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    head
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading (claimed in `on_init`): from now on all polling
    // request will return a `Packet::Noop`

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .internal_tx
        .send(smallvec![Packet::Noop])
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn frame_header_lengths_follow_rfc_6455() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x81, 0]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (0xFFFF, &[0x81, 126, 0xFF, 0xFF]),
            (0x1_0000, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, want) in cases {
            assert_eq!(text_frame_head(*len).as_slice(), *want, "len {len}");
        }
    }

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    fn engine() -> Arc<EngineIo<StubHandler>> {
        engine_with(EngineIoConfig::default())
    }

    fn engine_with(config: EngineIoConfig) -> Arc<EngineIo<StubHandler>> {
        Arc::new(EngineIo::new(Arc::new(StubHandler), config))
    }

    fn spawn_serve(
        socket: &Arc<Socket<()>>,
        server: WebSocketStream<DuplexStream>,
        heartbeat: Option<Heartbeat>,
    ) -> tokio::task::JoinHandle<Ended> {
        spawn_serve_on(engine(), socket, server, heartbeat)
    }

    fn spawn_serve_on<S>(
        engine: Arc<EngineIo<StubHandler>>,
        socket: &Arc<Socket<()>>,
        server: WebSocketStream<S>,
        heartbeat: Option<Heartbeat>,
    ) -> tokio::task::JoinHandle<Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let socket = socket.clone();
        tokio::spawn(async move {
            let conn = Box::new(Connection {
                ws: server,
                heartbeat,
            });
            serve(&engine, &socket, conn).await
        })
    }

    /// The server's end of a duplex pipe that counts the writes made to it.
    struct CountedWrites {
        inner: DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountedWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountedWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
            if polled.is_ready() {
                self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            polled
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A connection served with `window`, whose server side counts its writes.
    async fn serve_with_window(
        window: Duration,
    ) -> (
        Arc<Socket<()>>,
        WebSocketStream<DuplexStream>,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<Ended>,
    ) {
        let socket = socket();
        let (server, client) = tokio::io::duplex(4096);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = CountedWrites {
            inner: server,
            writes: writes.clone(),
        };
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let config = EngineIoConfig::builder().ws_write_window(window).build();
        let serving = spawn_serve_on(engine_with(config), &socket, server, None);
        (socket, client, writes, serving)
    }

    async fn next_text(client: &mut WebSocketStream<DuplexStream>) -> Message {
        tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("a message within the timeout")
            .expect("the connection open")
            .expect("a valid frame")
    }

    #[tokio::test]
    async fn a_write_window_sends_what_was_queued_during_it_in_one_write() {
        let window = Duration::from_millis(150);
        let (socket, mut client, writes, _serving) = serve_with_window(window).await;
        // An idle socket writes at once; the window starts with that write.
        socket.emit(Str::from("a")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4a"));
        let first_write = Instant::now();
        socket.emit(Str::from("b")).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        socket.emit(Str::from("c")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4b"));
        assert!(
            first_write.elapsed() >= window - Duration::from_millis(5),
            "a message queued within the window waits for its end: {:?}",
            first_write.elapsed()
        );
        assert_eq!(next_text(&mut client).await, Message::text("4c"));
        let n = writes.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, 2, "a, then b and c in one write; got {n} writes");
    }

    #[tokio::test]
    async fn a_socket_that_wrote_nothing_within_the_window_writes_at_once() {
        // A window far longer than the test: were "a" held, it would not come in time.
        let (socket, mut client, writes, _serving) =
            serve_with_window(Duration::from_secs(30)).await;
        socket.emit(Str::from("a")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4a"));
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_write_window_each_message_is_written_when_queued() {
        let (socket, mut client, writes, _serving) = serve_with_window(Duration::ZERO).await;
        socket.emit(Str::from("a")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4a"));
        socket.emit(Str::from("b")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4b"));
        let n = writes.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, 2, "a write per message, got {n}");
    }

    #[tokio::test]
    async fn a_session_closed_during_a_write_window_still_sends_the_held_message() {
        let (socket, mut client, _writes, serving) =
            serve_with_window(Duration::from_secs(30)).await;
        socket.emit(Str::from("first")).unwrap();
        assert_eq!(next_text(&mut client).await, Message::text("4first"));
        socket.emit(Str::from("last words")).unwrap();
        // The loop holds it once it has left the queue (the window is 30 s).
        let deadline = Instant::now() + TIMEOUT;
        while socket.internal_tx.len() > 0 {
            assert!(Instant::now() < deadline, "the loop never took the message");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        socket.cancellation_token.cancel();
        assert_eq!(next_text(&mut client).await, Message::text("4last words"));
        let ended = tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("the loop should stop")
            .unwrap();
        assert!(matches!(ended, Ended::SessionClosed));
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn the_loop_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;

        let polling = socket.internal_rx.lock().await;
        let serving = spawn_serve(&socket, server, None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!serving.is_finished(), "the loop should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the loop should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    #[tokio::test]
    async fn the_loop_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;

        let _polling = socket.internal_rx.lock().await;
        let serving = spawn_serve(&socket, server, None);
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        let ended = tokio::time::timeout(TIMEOUT, serving)
            .await
            .expect("the loop should stop")
            .unwrap();
        assert!(matches!(ended, Ended::SessionClosed));
    }

    #[tokio::test]
    async fn the_heartbeat_pings_after_the_interval_and_ends_without_a_pong() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let interval = Duration::from_millis(60);
        let started = Instant::now();
        let serving = spawn_serve(
            &socket,
            server,
            Some(Heartbeat::new(interval, Duration::from_millis(60))),
        );
        let ping = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
        assert_eq!(ping.unwrap().unwrap(), Message::text("2"));
        assert!(
            started.elapsed() >= interval,
            "the first PING waits for the interval"
        );
        client.send(Message::text("3")).await.unwrap();
        let ping = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
        assert_eq!(ping.unwrap().unwrap(), Message::text("2"));
        // No PONG this time: the connection ends with a heartbeat timeout.
        let ended = tokio::time::timeout(TIMEOUT, serving)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(ended, Ended::Error(Error::HeartbeatTimeout)));
    }
}
