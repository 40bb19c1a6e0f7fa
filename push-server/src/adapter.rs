//! The two socket.io adapters a node runs on, and `SocketIo<A>` with `A` erased for the
//! parts of the node that need not be generic (state, drain, connection gauge).

use futures::future::BoxFuture;
use socketioxide::{
    SocketIo, TransportType,
    adapter::{Adapter, Emitter, LocalAdapter},
    handler::ConnectHandler,
};
use socketioxide_redis::CustomRedisAdapter;

use push_contract::defaults;

use crate::{history::RECOVERING_ROOM, redis_link::RedisLink};

/// Whether a socket is still recovering (waiting outside its rooms to replay what it
/// missed).
pub fn recovering<A: Adapter>(socket: &socketioxide::extract::SocketRef<A>) -> bool {
    socket
        .rooms()
        .iter()
        .any(|room| room.as_ref() == RECOVERING_ROOM)
}

/// Several nodes: socketioxide's Redis adapter over our reconnecting link.
pub type ClusterAdapter = CustomRedisAdapter<Emitter, RedisLink>;
/// One node without Redis: socketioxide's in-memory adapter.
pub type SingleNodeAdapter = LocalAdapter;

/// An adapter a node serves with (cluster or single node). socketioxide only registers
/// namespaces on a concrete adapter, and each completes the registration its own way.
pub trait ServingAdapter: Adapter {
    /// Adds namespace `path`; resolves once its adapter is ready.
    fn add_namespace<C, T>(
        io: &SocketIo<Self>,
        path: &'static str,
        on_connect: C,
    ) -> BoxFuture<'static, Result<(), String>>
    where
        C: ConnectHandler<Self, T>,
        T: Send + Sync + 'static;
}

impl ServingAdapter for SingleNodeAdapter {
    fn add_namespace<C, T>(
        io: &SocketIo<Self>,
        path: &'static str,
        on_connect: C,
    ) -> BoxFuture<'static, Result<(), String>>
    where
        C: ConnectHandler<Self, T>,
        T: Send + Sync + 'static,
    {
        io.ns(path, on_connect);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl ServingAdapter for ClusterAdapter {
    fn add_namespace<C, T>(
        io: &SocketIo<Self>,
        path: &'static str,
        on_connect: C,
    ) -> BoxFuture<'static, Result<(), String>>
    where
        C: ConnectHandler<Self, T>,
        T: Send + Sync + 'static,
    {
        // Ready once the adapter has subscribed its Redis channels.
        let init = io.ns(path, on_connect);
        Box::pin(async move { init.await.map_err(|e| e.to_string()) })
    }
}

/// This node's own sockets, whatever the adapter.
pub trait NodeSockets: Send + Sync + 'static {
    /// Live sockets by transport: (websocket, polling), those `counted` says yes to.
    fn count_by_transport(&self, counted: &dyn Fn(&str) -> bool) -> (usize, usize);
    /// The socket.io ids of the live sockets.
    fn ids(&self) -> Vec<String>;
    /// Closes every socket that is left.
    fn close_all(&self) -> BoxFuture<'static, ()>;
    /// The recovery pids of this node's sockets (those that have one), each with
    /// whether the socket is in its rooms (not still recovering).
    fn recovery_pids(&self) -> Vec<(String, bool)>;
    /// Sends `event` with `data` to this node's sockets in `room` (every namespace; all
    /// sockets when `None`) whose id `chosen` accepts, then disconnects them (socket.io's
    /// DISCONNECT, after the event on the same socket); returns how many.
    fn disconnect(
        &self,
        room: Option<&str>,
        chosen: &dyn Fn(&str) -> bool,
        event: &str,
        data: &serde_json::Value,
    ) -> usize;
    /// This node's sockets in `room` (every namespace) and their users (one entry per
    /// socket that has one: repeats included).
    fn room_members(&self, room: &str) -> (usize, Vec<String>);
    /// This node's client sockets as the socket.io Admin UI shows them (at most `limit`),
    /// with how many there are in all.
    fn admin_view(&self, limit: usize) -> (Vec<serde_json::Value>, usize);
}

impl<A: Adapter> NodeSockets for SocketIo<A> {
    fn count_by_transport(&self, counted: &dyn Fn(&str) -> bool) -> (usize, usize) {
        let sockets: Vec<_> = self
            .sockets()
            .into_iter()
            .filter(|s| counted(s.id.as_str()))
            .collect();
        let websocket = sockets
            .iter()
            .filter(|s| s.transport_type() == TransportType::Websocket)
            .count();
        (websocket, sockets.len() - websocket)
    }

    fn ids(&self) -> Vec<String> {
        self.sockets().iter().map(|s| s.id.to_string()).collect()
    }

    fn close_all(&self) -> BoxFuture<'static, ()> {
        let io = self.clone();
        Box::pin(async move { io.close().await })
    }

    fn recovery_pids(&self) -> Vec<(String, bool)> {
        self.sockets()
            .iter()
            .filter_map(|s| s.recovery_pid().map(|pid| (pid.to_owned(), !recovering(s))))
            .collect()
    }

    fn disconnect(
        &self,
        room: Option<&str>,
        chosen: &dyn Fn(&str) -> bool,
        event: &str,
        data: &serde_json::Value,
    ) -> usize {
        let mut ended = 0;
        for namespace in crate::publish::NAMESPACES {
            let Some(ns) = self.of(*namespace) else {
                continue;
            };
            let sockets = match room {
                Some(room) => ns.local().to(room.to_owned()).sockets(),
                None => ns.local().sockets(),
            };
            for socket in sockets.into_iter().filter(|s| chosen(s.id.as_str())) {
                // Gone meanwhile: nothing to tell, nothing to end.
                let _ = socket.emit(event, data);
                if socket.disconnect().is_ok() {
                    ended += 1;
                }
            }
        }
        ended
    }

    fn admin_view(&self, limit: usize) -> (Vec<serde_json::Value>, usize) {
        let sockets = self.sockets();
        let total = sockets.len();
        let shown = sockets
            .iter()
            .take(limit)
            .map(|s| {
                let transport = match s.transport_type() {
                    TransportType::Websocket => "websocket",
                    TransportType::Polling => "polling",
                };
                let user = s
                    .extensions
                    .get::<crate::auth::identity::Identity>()
                    .and_then(|i| i.user);
                let mut rooms: Vec<String> = s.rooms().iter().map(|r| r.to_string()).collect();
                rooms.sort();
                // The shape of `@socket.io/admin-ui`'s SerializedSocket; no headers, no
                // address (tokens and cookies travel there).
                serde_json::json!({
                    "id": s.id.as_str(),
                    "clientId": s.id.as_str(),
                    "transport": transport,
                    "nsp": defaults::NAMESPACE,
                    "data": { "user": user },
                    "handshake": {
                        "address": "", "headers": {}, "query": {}, "issued": 0,
                        "secure": false, "time": "", "url": "", "xdomain": false,
                    },
                    "rooms": rooms,
                })
            })
            .collect();
        (shown, total)
    }

    fn room_members(&self, room: &str) -> (usize, Vec<String>) {
        let mut count = 0;
        let mut users = Vec::new();
        for namespace in crate::publish::NAMESPACES {
            let Some(ns) = self.of(*namespace) else {
                continue;
            };
            for socket in ns.local().within(room.to_owned()).sockets() {
                count += 1;
                if let Some(user) = socket
                    .extensions
                    .get::<crate::auth::identity::Identity>()
                    .and_then(|i| i.user)
                {
                    users.push(user);
                }
            }
        }
        (count, users)
    }
}
