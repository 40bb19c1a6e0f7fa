//! push-server: one node of a socket.io push cluster.
//!
//! `main` parses the config, binds and calls [`run`]; tests bind `127.0.0.1:0` and call
//! the same [`run`]. [`app`] is the client port's plain HTTP routes, [`admin::router`]
//! the server port's (the publish API, metrics, health).

pub mod adapter;
pub mod admin;
pub mod admin_ui;
pub mod api_token;
pub mod auth;
pub mod backend;
pub mod cluster_ask;
pub mod config;
pub mod conn;
pub mod disconnect;
pub mod drain;
pub mod error;
pub mod history;
pub mod metrics;
pub mod presence;
pub mod publish;
pub mod rebalance;
pub mod redis_link;
pub mod request_head;
pub mod room_sizes;
pub mod shutdown;
pub mod socket;
pub mod state;
pub mod telemetry;
pub mod user_limit;
pub mod web;

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Bytes, middleware, routing::get};
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    adapter::{ClusterAdapter, NodeSockets, ServingAdapter, SingleNodeAdapter},
    config::FanoutMode,
    history::Offset,
    publish::{
        channel::ChannelInput,
        deliver::{NodeDelivery, SocketDelivery},
        fanout::Fanout,
        interest::Interest,
        log,
    },
    redis_link::RedisLink,
    state::{AppState, SharedState, Started},
};
pub use crate::{config::Config, error::RunError, shutdown::Shutdown};

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

/// The client port's HTTP routes (the socket.io layer is added by [`run`]): the demo page
/// and its client bundle when configured, nothing else. The publish API is on the server
/// port ([`admin::router`]), so a route exposing clients never exposes it.
pub fn app(state: SharedState) -> Router {
    let admin_ui = state
        .config
        .admin_ui
        .as_ref()
        .and_then(|a| a.dir.as_deref())
        .map(admin_ui::routes);
    let router = match admin_ui {
        Some(admin_ui) => admin_ui,
        None => Router::new(),
    };
    if !state.config.demo_page {
        return router.with_state(state);
    }
    let bundle = web::load_bundle(state.config.client_js.as_deref()).map(Bytes::from);
    router
        .route("/", get(web::page))
        .route(
            web::CLIENT_JS_PATH,
            get(move || {
                let bundle = bundle.clone();
                async move { web::bundle_response(bundle.as_deref()) }
            }),
        )
        .with_state(state)
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

/// Picks the adapter: Redis when configured (once it first answers), else in-memory.
async fn serve_clients(
    listener: TcpListener,
    state: SharedState,
    shutdown: &Shutdown,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let Some(info) = state.config.redis.clone() else {
        let builder: SocketIoBuilder<SingleNodeAdapter> = SocketIo::builder();
        return serve_with(builder, None, listener, state, shutdown, stop).await;
    };
    let topology = state.config.redis_topology.clone();
    let Some(link) = RedisLink::connect_with_retry(info, topology, &shutdown.drain).await else {
        return Ok(()); // asked to stop before Redis ever answered
    };
    state.metrics.redis_up.set(1);
    state.metrics.redis_primary(&link.primary());
    let adapter = RedisAdapterCtr::new_with_driver(
        link.clone(),
        RedisAdapterConfig::new().with_prefix(push_contract::cluster::ADAPTER_PREFIX),
    );
    let builder = SocketIo::builder().with_adapter::<ClusterAdapter>(adapter);
    serve_with(builder, Some(link), listener, state, shutdown, stop).await
}

/// The one serve path of both adapters: socket.io up, the client port open until the
/// drain, the drain.
async fn serve_with<A: ServingAdapter>(
    builder: SocketIoBuilder<A>,
    link: Option<RedisLink>,
    listener: TcpListener,
    state: SharedState,
    shutdown: &Shutdown,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let (layer, io) = socket::configure(builder, &state).build_layer();
    socket::register(&io).await.map_err(RunError::Adapter)?;
    admin_ui::register(&io, &state)
        .await
        .map_err(RunError::Adapter)?;
    let sockets: Arc<dyn NodeSockets> = Arc::new(io.clone());
    let room_change: state::RoomChange = {
        let (io, state) = (io.clone(), state.clone());
        Arc::new(move |sid: &str, room: String, join: bool| {
            socket::change_room(&io, &state, sid, room, join)
        })
    };
    let delivery: Arc<dyn NodeDelivery> = Arc::new(SocketDelivery {
        io,
        metrics: state.metrics.clone(),
        room_sizes: state.room_sizes.clone(),
        conns: state.conns.clone(),
        warned_at: Default::default(),
    });
    let (fanout, interest) = match &link {
        Some(link) => {
            let (fanout, interest) = follow_redis(
                link,
                &state,
                delivery.clone(),
                sockets.clone(),
                room_change.clone(),
                shutdown,
                stop,
            )
            .await;
            (Some(fanout), interest)
        }
        None => (None, None),
    };
    let _ = state.started.set(Started {
        delivery,
        link,
        fanout,
        interest,
        sockets: sockets.clone(),
        room_change: room_change.clone(),
    });
    let router = app(state.clone())
        .layer(layer)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            socket::gate::handshake_gate,
        ));
    serve_until_drained(listener, router, &state, sockets.as_ref(), shutdown).await;
    Ok(())
}

/// With Redis: keeps `redis_up` true to the link, delivers the fan-out log in order
/// from its current end (all of it, or by interest only its rooms' messages), appends
/// what backends publish on the channel (while this node holds its lease, until it
/// drains), and keeps its sockets' recovery sessions alive.
async fn follow_redis(
    link: &RedisLink,
    state: &SharedState,
    delivery: Arc<dyn NodeDelivery>,
    sockets: Arc<dyn NodeSockets>,
    room_change: state::RoomChange,
    shutdown: &Shutdown,
    stop: &CancellationToken,
) -> (Arc<Fanout>, Option<Arc<Interest>>) {
    let metrics = state.metrics.clone();
    let config = &state.config;
    tokio::spawn(
        link.clone()
            .watch(metrics.clone(), Duration::from_secs(1), stop.clone()),
    );
    tokio::spawn(link.clone().follow(metrics.clone(), stop.clone()));
    let start = log::end(link, &state.keys).await.unwrap_or_else(|e| {
        // Reading from the start delivers old entries to no one: nobody is connected yet.
        tracing::warn!(error = %e, "fan-out log end unknown: reading it from the start");
        Offset::ZERO
    });
    let fanout = Arc::new(Fanout::new(start, config.history.is_some()));
    let reader = log::Reader {
        link: link.clone(),
        keys: state.keys.clone(),
        fanout: fanout.clone(),
        delivery,
        metrics: metrics.clone(),
        max_payload: config.max_payload_bytes,
        sockets: sockets.clone(),
        conns: state.conns.clone(),
        wait: config.replica_wait(),
        position_key: state.keys.reader_position(&config.node_id),
    };
    let interest = match config.fanout {
        FanoutMode::Log => {
            tokio::spawn(reader.run(start, stop.clone()));
            None
        }
        FanoutMode::Interest => {
            let (interest, receiver) =
                Interest::new(reader, state.room_sizes.clone(), &config.node_id);
            tokio::spawn(receiver.run(stop.clone()));
            Some(interest)
        }
    };
    let channel = ChannelInput {
        link: link.clone(),
        channel: config.redis_channel.clone(),
        keys: state.keys.clone(),
        history: config.history,
        metrics,
        max_payload: config.max_payload_bytes,
        holder: format!(
            "{}/{}",
            config.node_id,
            history::session::new_pid().unwrap_or_default()
        ),
        wait: config.replica_wait(),
    };
    tokio::spawn(channel.run(shutdown.drain.clone()));
    tokio::spawn(disconnect::listen(
        link.clone(),
        state.keys.disconnect_channel(),
        sockets.clone(),
        state.metrics.clone(),
        stop.clone(),
    ));
    if let Some(slots) = &state.user_slots {
        tokio::spawn(slots.clone().beat(link.clone(), stop.clone()));
    }
    tokio::spawn(presence::listen(
        link.clone(),
        state.keys.presence_channel(),
        sockets.clone(),
        stop.clone(),
    ));
    if state.config.admin_ui.is_some() {
        tokio::spawn(admin_ui::listen(
            link.clone(),
            state.keys.admin_ui_channel(),
            config.node_id.clone(),
            sockets.clone(),
            room_change,
            stop.clone(),
        ));
    }
    if let Some(history) = config.history {
        tokio::spawn(socket::recover::keep_sessions(
            link.clone(),
            state.keys.clone(),
            history,
            socket::recover::received_grace(config),
            sockets.clone(),
            stop.clone(),
        ));
    }
    (fanout, interest)
}

/// Accepts clients until the drain starts, moves them off over the drain window, then
/// closes whatever is left.
async fn serve_until_drained(
    listener: TcpListener,
    router: Router,
    state: &SharedState,
    sockets: &dyn NodeSockets,
    shutdown: &Shutdown,
) {
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
    // Not ready and refusing new sessions from here on. Moving a client before the
    // Service has stopped routing here, and to the pods removed with this one, would send
    // it to a pod that is going away too: it would be moved twice.
    tracing::info!(settle = ?state.config.drain_settle, "draining: leaving the Service before moving clients");
    tokio::select! {
        _ = shutdown.abort.cancelled() => {}
        _ = tokio::time::sleep(state.config.drain_settle) => {}
    }
    let ids = sockets.ids();
    tracing::info!(sockets = ids.len(), window = ?state.config.drain, "draining");
    drain::run(ids, state.config.drain, &shutdown.abort, |sid| {
        state.conns.cut(sid)
    })
    .await;
    stop_accepting.cancel();
    // Whatever is left (late upgrades, sessions without a known connection).
    let _ = tokio::time::timeout(Duration::from_secs(2), sockets.close_all()).await;
    cut_all.cancel();
    tracing::info!("drained");
}
