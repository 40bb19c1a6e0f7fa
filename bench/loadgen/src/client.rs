//! One simulated socket.io client over WebSocket or long-polling: connect,
//! join its room, then count stamped events until the connection ends.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::protocol::{self, CONNECT_DEFAULT_NAMESPACE, Inbound, PONG};
use crate::stats::{Recorder, unix_nanos};

/// Connect + namespace connect + room join must finish within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Ack id of the one `subscribe` each client sends.
const SUBSCRIBE_ACK_ID: u64 = 1;
/// Errors kept for the report; the rest are only counted.
const KEPT_ERRORS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad server URL {0:?}: expected http://IP:PORT")]
    BadUrl(String),
    #[error("tcp: {0}")]
    Tcp(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("http status {0} on {1}")]
    Status(u16, &'static str),
    #[error("protocol: {0}")]
    Protocol(#[from] protocol::DecodeError),
    #[error("server refused the namespace connect: {0}")]
    Refused(String),
    #[error("connection closed during setup")]
    ClosedDuringSetup,
    #[error("setup timed out after {0:?} waiting for {1}")]
    SetupTimeout(Duration, &'static str),
}

/// State shared by all clients of one worker.
#[derive(Default)]
pub struct Shared {
    pub recorder: Mutex<Recorder>,
    pub open: AtomicUsize,
    pub dropped: AtomicUsize,
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn keep_error(&self, error: String) {
        if let Ok(mut errors) = self.errors.lock()
            && errors.len() < KEPT_ERRORS
        {
            errors.push(error);
        }
    }

    fn on_event(&self, node: usize, inbound: &Inbound<'_>) {
        if let Inbound::Event { stamp, .. } = inbound
            && let Ok(mut rec) = self.recorder.lock()
        {
            match stamp {
                Some(stamp) => rec.record(node, *stamp, unix_nanos()),
                None => rec.unstamped += 1,
            }
        }
    }
}

/// Everything one client needs to know.
pub struct ClientPlan {
    pub base_url: String,
    pub node: usize,
    pub socket_path: String,
    pub room: Option<String>,
    pub source: Ipv4Addr,
    pub subscribe_event: String,
}

/// Parses `http://IP:PORT[/]` (the loopback servers this tool targets).
pub fn socket_addr(base_url: &str) -> Result<SocketAddr, ClientError> {
    base_url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|hostport| hostport.parse().ok())
        .ok_or_else(|| ClientError::BadUrl(base_url.to_string()))
}

const STAGE_CONNECT: &str = "the TCP/HTTP connection";
const STAGE_UPGRADE: &str = "the WebSocket upgrade";
const STAGE_OPEN: &str = "the Engine.IO open packet";
const STAGE_NAMESPACE: &str = "the namespace connect";
const STAGE_ACK: &str = "the subscribe ack";

/// What setup waits for once `inbound` has arrived (for timeout messages).
fn stage_after(inbound: &Inbound<'_>, current: &'static str) -> &'static str {
    match inbound {
        Inbound::Open { .. } => STAGE_NAMESPACE,
        Inbound::Connected => STAGE_ACK,
        _ => current,
    }
}

/// Setup progress, shared by both transports: what to send next, if anything.
enum Step {
    Wait,
    Send(String),
    Ready,
}

/// The setup state machine: open → namespace connect → subscribe ack.
struct Setup<'a> {
    plan: &'a ClientPlan,
    subscribed: bool,
}

impl Setup<'_> {
    fn on(&mut self, inbound: &Inbound<'_>) -> Result<Step, ClientError> {
        Ok(match inbound {
            Inbound::Open { .. } => Step::Send(CONNECT_DEFAULT_NAMESPACE.to_string()),
            Inbound::Ping => Step::Send(PONG.to_string()),
            Inbound::Connected => match &self.plan.room {
                Some(room) => Step::Send(protocol::subscribe_packet(
                    &self.plan.subscribe_event,
                    SUBSCRIBE_ACK_ID,
                    std::slice::from_ref(room),
                )),
                None => Step::Ready,
            },
            Inbound::Ack(SUBSCRIBE_ACK_ID) if !self.subscribed => {
                self.subscribed = true;
                Step::Ready
            }
            Inbound::ConnectError(reason) => return Err(ClientError::Refused(reason.to_string())),
            Inbound::Close | Inbound::Disconnected => return Err(ClientError::ClosedDuringSetup),
            _ => Step::Wait,
        })
    }
}

/// A client's setup under [`SETUP_TIMEOUT`]: its result, or the timeout.
type SetupOutcome<T> = Result<Result<T, ClientError>, tokio::time::error::Elapsed>;

/// Reports a client's setup outcome on `ready` (naming the `stage` it stopped at)
/// and counts a set-up client as open; `None` when the setup failed.
fn report_setup<T>(
    setup: SetupOutcome<T>,
    stage: &'static str,
    shared: &Shared,
    ready: oneshot::Sender<Result<(), String>>,
) -> Option<T> {
    let outcome = match setup {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("{e} (while waiting for {stage})")),
        Err(_) => Err(ClientError::SetupTimeout(SETUP_TIMEOUT, stage).to_string()),
    };
    match outcome {
        Ok(client) => {
            shared.open.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(Ok(()));
            Some(client)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// Runs one WebSocket client; `ready` gets the setup outcome.
pub async fn run_websocket(
    plan: ClientPlan,
    shared: &Shared,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut stage = STAGE_CONNECT;
    let setup = tokio::time::timeout(SETUP_TIMEOUT, websocket_setup(&plan, &mut stage)).await;
    let Some(mut ws) = report_setup(setup, stage, shared, ready) else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        match protocol::decode(&text) {
            Ok(Inbound::Ping) => {
                if ws.send(Message::text(PONG)).await.is_err() {
                    break;
                }
            }
            Ok(Inbound::Close | Inbound::Disconnected) => break,
            Ok(inbound) => shared.on_event(plan.node, &inbound),
            Err(e) => shared.keep_error(e.to_string()),
        }
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
    shared.dropped.fetch_add(1, Ordering::Relaxed);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn websocket_setup(plan: &ClientPlan, stage: &mut &'static str) -> Result<Ws, ClientError> {
    let addr = socket_addr(&plan.base_url)?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(plan.source.into(), 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}{}?EIO=4&transport=websocket", plan.socket_path);
    // Small buffers: thousands of mostly idle clients share one process.
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    *stage = STAGE_UPGRADE;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    *stage = STAGE_OPEN;
    let mut setup = Setup {
        plan,
        subscribed: false,
    };
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let inbound = protocol::decode(&text)?;
        *stage = stage_after(&inbound, stage);
        match setup.on(&inbound)? {
            Step::Wait => {}
            Step::Send(packet) => ws.send(Message::text(packet)).await?,
            Step::Ready => return Ok(ws),
        }
    }
    Err(ClientError::ClosedDuringSetup)
}

/// Runs one long-polling client over `http` (a pooled client bound to the source).
pub async fn run_polling(
    plan: ClientPlan,
    http: reqwest::Client,
    shared: &Shared,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut stage = STAGE_CONNECT;
    let setup = tokio::time::timeout(SETUP_TIMEOUT, polling_setup(&plan, &http, &mut stage)).await;
    let Some((url, backlog)) = report_setup(setup, stage, shared, ready) else {
        return;
    };
    if let Err(e) = polling_loop(&plan, &http, &url, backlog, shared).await {
        shared.keep_error(e.to_string());
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
    shared.dropped.fetch_add(1, Ordering::Relaxed);
}

async fn polling_loop(
    plan: &ClientPlan,
    http: &reqwest::Client,
    url: &str,
    mut payload: String,
    shared: &Shared,
) -> Result<(), ClientError> {
    loop {
        let mut pong = false;
        for packet in protocol::split_payload(&payload) {
            match protocol::decode(packet) {
                Ok(Inbound::Ping) => pong = true,
                Ok(Inbound::Close | Inbound::Disconnected) => return Ok(()),
                Ok(inbound) => shared.on_event(plan.node, &inbound),
                Err(e) => shared.keep_error(e.to_string()),
            }
        }
        if pong {
            post(http, url, PONG.to_string()).await?;
        }
        payload = get(http, url).await?;
    }
}

/// Returns the session URL and any payload read past the subscribe ack.
async fn polling_setup(
    plan: &ClientPlan,
    http: &reqwest::Client,
    stage: &mut &'static str,
) -> Result<(String, String), ClientError> {
    let base = format!(
        "{}{}?EIO=4&transport=polling",
        plan.base_url.trim_end_matches('/'),
        plan.socket_path
    );
    let mut payload = get(http, &base).await?;
    *stage = STAGE_OPEN;
    let mut url = None;
    let mut setup = Setup {
        plan,
        subscribed: false,
    };
    loop {
        let ready = {
            let mut packets = protocol::split_payload(&payload);
            let mut ready = None;
            while let Some(packet) = packets.next() {
                let inbound = protocol::decode(packet)?;
                *stage = stage_after(&inbound, stage);
                if let Inbound::Open { sid } = inbound {
                    url = Some(format!("{base}&sid={sid}"));
                }
                let Some(session_url) = url.as_deref() else {
                    continue;
                };
                match setup.on(&inbound)? {
                    Step::Wait => {}
                    Step::Send(packet) => post(http, session_url, packet).await?,
                    Step::Ready => {
                        let rest: Vec<&str> = packets.by_ref().collect();
                        ready = Some((
                            session_url.to_string(),
                            rest.join(&protocol::RECORD_SEPARATOR.to_string()),
                        ));
                        break;
                    }
                }
            }
            ready
        };
        if let Some(ready) = ready {
            return Ok(ready);
        }
        let session_url = url.as_deref().ok_or(ClientError::ClosedDuringSetup)?;
        payload = get(http, session_url).await?;
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Result<String, ClientError> {
    let resp = http.get(url).send().await?;
    if !resp.status().is_success() {
        return Err(ClientError::Status(resp.status().as_u16(), "GET"));
    }
    Ok(resp.text().await?)
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> Result<(), ClientError> {
    let resp = http
        .post(url)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(ClientError::Status(resp.status().as_u16(), "POST"));
    }
    resp.bytes().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn report_setup_reports_each_outcome() {
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .expect_err("pending never completes");
        // (case, setup outcome, client returned, what `ready` hears)
        type Case = (
            &'static str,
            SetupOutcome<u8>,
            Option<u8>,
            Result<(), String>,
        );
        let cases: [Case; 3] = [
            ("set up: counted open", Ok(Ok(7)), Some(7), Ok(())),
            (
                "failed: names the stage",
                Ok(Err(ClientError::ClosedDuringSetup)),
                None,
                Err(format!(
                    "{} (while waiting for {STAGE_UPGRADE})",
                    ClientError::ClosedDuringSetup
                )),
            ),
            (
                "timed out: names the stage",
                Err(elapsed),
                None,
                Err(ClientError::SetupTimeout(SETUP_TIMEOUT, STAGE_UPGRADE).to_string()),
            ),
        ];
        for (case, setup, want, want_ready) in cases {
            let shared = Shared::default();
            let (ready, reported) = oneshot::channel();
            let got = report_setup(setup, STAGE_UPGRADE, &shared, ready);
            assert_eq!(got, want, "case: {case}");
            assert_eq!(reported.await.ok(), Some(want_ready), "case: {case}");
            let open = usize::from(want.is_some());
            assert_eq!(shared.open.load(Ordering::Relaxed), open, "case: {case}");
        }
    }

    #[test]
    fn socket_addr_table() {
        let ok = [
            ("plain", "http://127.0.0.1:3000"),
            ("trailing slash", "http://127.0.0.2:80/"),
        ];
        for (name, url) in ok {
            assert!(socket_addr(url).is_ok(), "case {name}");
        }
        let bad = [
            ("https", "https://127.0.0.1:1"),
            ("hostname", "http://localhost:1"),
            ("no port", "http://127.0.0.1"),
        ];
        for (name, url) in bad {
            assert!(
                matches!(socket_addr(url), Err(ClientError::BadUrl(_))),
                "case {name}"
            );
        }
    }

    fn plan(room: Option<&str>) -> ClientPlan {
        ClientPlan {
            base_url: "http://127.0.0.1:1".into(),
            node: 0,
            socket_path: "/socket.io/".into(),
            room: room.map(str::to_string),
            source: Ipv4Addr::LOCALHOST,
            subscribe_event: "subscribe".into(),
        }
    }

    #[test]
    fn setup_sequence_with_room() {
        let p = plan(Some("room-1"));
        let mut s = Setup {
            plan: &p,
            subscribed: false,
        };
        assert!(matches!(s.on(&Inbound::Open { sid: "x" }), Ok(Step::Send(p)) if p == "40"));
        assert!(matches!(s.on(&Inbound::Ping), Ok(Step::Send(p)) if p == "3"));
        assert!(
            matches!(s.on(&Inbound::Connected), Ok(Step::Send(p)) if p.starts_with("421[\"subscribe\""))
        );
        assert!(
            matches!(s.on(&Inbound::Ack(9)), Ok(Step::Wait)),
            "someone else's ack"
        );
        assert!(matches!(s.on(&Inbound::Ack(1)), Ok(Step::Ready)));
    }

    #[test]
    fn setup_without_room_is_ready_on_connect_and_refusal_is_an_error() {
        let p = plan(None);
        let mut s = Setup {
            plan: &p,
            subscribed: false,
        };
        assert!(matches!(s.on(&Inbound::Connected), Ok(Step::Ready)));
        assert!(matches!(
            s.on(&Inbound::ConnectError("no")),
            Err(ClientError::Refused(_))
        ));
        assert!(matches!(
            s.on(&Inbound::Close),
            Err(ClientError::ClosedDuringSetup)
        ));
    }
}
