//! push-server: one node of a socket.io push cluster.
//!
//! `main` parses the config, binds and calls [`run`]; tests bind `127.0.0.1:0` and call
//! the same [`run`]. [`app`] is the client port's plain HTTP routes.

pub mod admin;
pub mod auth;
pub mod config;
pub mod conn;
pub mod drain;
pub mod error;
pub mod metrics;
pub mod publish;
pub mod redis_link;
pub mod request_head;
pub mod room_sizes;
pub mod shutdown;
pub mod socket;
pub mod state;
pub mod telemetry;
pub mod web;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use push_contract::paths;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder, TransportType, adapter::Adapter};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::{config::Config, error::RunError, shutdown::Shutdown};
use crate::{
    conn::ConnHandle,
    publish::deliver::SocketDelivery,
    redis_link::RedisLink,
    state::{AppState, SharedState, Started},
};

/// The two bound listeners of a node.
pub struct Listeners {
    pub client: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Writes `{"client": ..., "admin": ...}` to `path` atomically (temp file + rename),
    /// so a reader never sees half a file.
    pub fn write_address_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        let body = serde_json::json!({
            "client": self.client.local_addr()?.to_string(),
            "admin": self.admin.local_addr()?.to_string(),
        });
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        std::fs::write(&temp, body.to_string())?;
        std::fs::rename(&temp, path)
    }
}

/// The socket.io adapter over our reconnecting Redis link.
pub type ClusterAdapter<E> = CustomRedisAdapter<E, RedisLink>;

/// The client port's HTTP routes (the socket.io layer is added by [`run`]).
pub fn app(state: SharedState) -> Router {
    let bundle = web::load_bundle(state.config.client_js.as_deref()).map(Bytes::from);
    Router::new()
        .route("/", get(web::page))
        .route(
            web::CLIENT_JS_PATH,
            get(move || {
                let bundle = bundle.clone();
                async move { web::bundle_response(bundle.as_deref()) }
            }),
        )
        .route(paths::PUBLISH, post(publish::http::publish))
        .with_state(state)
}

/// In front of socket.io: refuses new handshakes while draining (the client then
/// retries, through the load balancer, elsewhere) and maps session ids to connections.
async fn socket_gate(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    if req.uri().path().starts_with(paths::SOCKET_IO) {
        match req.uri().query().and_then(engine_sid) {
            None if state.draining() => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "1")],
                    "server is draining: reconnect to another node\n",
                )
                    .into_response();
            }
            Some(sid) if state.conns.is_moved_off(sid) => {
                // Engine.IO's own answer for a gone session: the client reconnects.
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"code":1,"message":"Session ID unknown"}"#,
                )
                    .into_response();
            }
            Some(sid) => {
                if let Some(conn) = req.extensions().get::<ConnHandle>() {
                    state.conns.attach(sid, conn);
                }
            }
            None => {
                // A new session: its head is kept as long as the session lives.
                let (mut parts, body) = req.into_parts();
                request_head::detach(&mut parts);
                req = Request::from_parts(parts, body);
            }
        }
    }
    next.run(req).await
}

/// The Engine.IO session id of a request (`sid=` query parameter); none = a new handshake.
fn engine_sid(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
        .filter(|sid| !sid.is_empty())
}

fn configure<A: Adapter>(builder: SocketIoBuilder<A>, state: &SharedState) -> SocketIoBuilder<A> {
    let max = state.config.max_payload_bytes;
    builder
        .with_state(state.clone())
        .req_path(paths::SOCKET_IO.trim_end_matches('/').to_owned())
        .max_payload(max as u64)
        // engine.io's max_payload covers only polling bodies; these bound WebSocket
        // messages: an oversized one closes that connection (transport error).
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        .ws_read_buffer_size(config::WS_READ_BUFFER_BYTES)
        // Binary attachments are buffered until a packet is complete: their sum is
        // bounded by our payload limit (socketioxide's default is 10 MB per socket, which
        // let 50 sockets pin 485 MB), their count by a small number, their wait by a
        // short timeout (checked when the next frame arrives; a timer needs an engine patch).
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max)
                .max_incoming_binaries(config::MAX_ATTACHMENTS)
                .packet_completion_timeout(config::ATTACHMENT_COMPLETION_TIMEOUT),
        )
}

fn started<A: Adapter>(io: &SocketIo<A>, state: &SharedState, link: Option<RedisLink>) -> Started {
    let counter_io = io.clone();
    Started {
        delivery: Arc::new(SocketDelivery {
            io: io.clone(),
            metrics: state.metrics.clone(),
            room_sizes: state.room_sizes.clone(),
        }),
        link,
        counter: Box::new(move || {
            let sockets = counter_io.sockets();
            let websocket = sockets
                .iter()
                .filter(|s| s.transport_type() == TransportType::Websocket)
                .count();
            (websocket, sockets.len() - websocket)
        }),
    }
}

/// Serves a node until its drain (or abort) completes. Returns after every client
/// was moved off and the listeners are closed.
pub async fn run(listeners: Listeners, config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    let state = AppState::new(config, shutdown.clone());
    let stop = CancellationToken::new();
    let admin = tokio::spawn(
        axum::serve(listeners.admin, admin::router(state.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    let result = serve_clients(listeners.client, state, &shutdown, &stop).await;
    stop.cancel();
    match admin.await {
        Ok(Err(source)) => Err(RunError::Serve {
            listener: "admin",
            source,
        }),
        _ => result,
    }
}

async fn serve_clients(
    listener: TcpListener,
    state: SharedState,
    shutdown: &Shutdown,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let link = match state.config.redis.clone() {
        Some(info) => match RedisLink::connect_with_retry(info, &shutdown.drain).await {
            Some(link) => Some(link),
            None => return Ok(()), // asked to stop before Redis ever answered
        },
        None => None,
    };
    let (router, closer) = match link {
        Some(link) => {
            let ctr = RedisAdapterCtr::new_with_driver(
                link.clone(),
                RedisAdapterConfig::new().with_prefix(push_contract::cluster::ADAPTER_PREFIX),
            );
            let builder = configure(
                SocketIo::builder().with_adapter::<ClusterAdapter<_>>(ctr),
                &state,
            );
            let (layer, io) = builder.build_layer();
            socket::register_cluster(&io)
                .await
                .map_err(RunError::Adapter)?;
            state.metrics.redis_up.set(1);
            let ready = started(&io, &state, Some(link.clone()));
            let delivery = ready.delivery.clone();
            let _ = state.started.set(ready);
            tokio::spawn(link.clone().watch(
                state.metrics.clone(),
                Duration::from_secs(1),
                stop.clone(),
            ));
            publish::channel::subscribe(
                &link,
                &state.config.redis_channel,
                delivery,
                state.metrics.clone(),
                state.config.max_payload_bytes,
                stop.clone(),
            )
            .await?;
            (app(state.clone()).layer(layer), closer_for(io))
        }
        None => {
            let (layer, io) = configure(SocketIo::builder(), &state).build_layer();
            socket::register_local(&io);
            let _ = state.started.set(started(&io, &state, None));
            (app(state.clone()).layer(layer), closer_for(io))
        }
    };
    let router = router.layer(middleware::from_fn_with_state(state.clone(), socket_gate));
    let stop_accepting = CancellationToken::new();
    let cut_all = CancellationToken::new();
    let admission = conn::Admission {
        permits: state.admission.clone(),
        header_timeout: state.config.header_timeout,
    };
    tokio::spawn(conn::serve(
        listener,
        router,
        admission,
        stop_accepting.clone(),
        cut_all.clone(),
    ));
    tracing::info!(node = %state.config.node_id, "serving");

    shutdown.drain.cancelled().await;
    state.metrics.draining.set(1);
    let ids = (closer.ids)();
    tracing::info!(sockets = ids.len(), window = ?state.config.drain, "draining");
    drain::run(ids, state.config.drain, &shutdown.abort, |sid| {
        state.conns.cut(sid)
    })
    .await;
    stop_accepting.cancel();
    // Whatever is left (late upgrades, sessions without a known connection).
    let _ = tokio::time::timeout(Duration::from_secs(2), (closer.close_all)()).await;
    cut_all.cancel();
    tracing::info!("drained");
    Ok(())
}

/// The adapter-specific operations the drain needs, type-erased.
struct Closer {
    ids: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    close_all: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

fn closer_for<A: Adapter>(io: SocketIo<A>) -> Closer {
    let (ids_io, close_io) = (io.clone(), io);
    Closer {
        ids: Box::new(move || ids_io.sockets().iter().map(|s| s.id.to_string()).collect()),
        close_all: Box::new(move || {
            let io = close_io.clone();
            Box::pin(async move { io.close().await })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::engine_sid;

    #[test]
    fn engine_sid_is_found_in_the_query() {
        let cases = [
            ("handshake", "EIO=4&transport=polling", None),
            (
                "polling request",
                "EIO=4&transport=polling&sid=abc",
                Some("abc"),
            ),
            ("sid first", "sid=xyz&EIO=4", Some("xyz")),
            ("empty sid is a handshake", "EIO=4&sid=", None),
            ("lookalike key", "EIO=4&xsid=abc", None),
        ];
        for (name, query, want) in cases {
            assert_eq!(engine_sid(query), want, "case {name}");
        }
    }
}
