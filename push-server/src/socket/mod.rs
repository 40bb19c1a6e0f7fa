//! socket.io on the client port: its settings, the handshake gate in front of it, and
//! the namespace: authentication on connect (`connect`), then subscribe / unsubscribe
//! (`events`) until the socket leaves or its token expires (`expiry`).

mod backend_event;
mod client_publish;
mod connect;
mod events;
mod expiry;
mod extensions;
pub mod gate;
mod membership;
mod presence_events;
pub mod rate;
pub mod recover;
mod refresh;
mod rooms;

use push_contract::{defaults, paths};
use socketioxide::{
    ParserConfig, SocketIo, SocketIoBuilder, adapter::Adapter, handler::ConnectHandler,
};

use self::connect::{authenticate, on_connect};
pub use self::membership::change_room;
pub use self::rooms::{MAX_ROOMS_PER_REQUEST, MAX_ROOMS_PER_SOCKET};
use crate::{adapter::ServingAdapter, config, state::SharedState};

/// socket.io's settings from the node's config.
pub fn configure<A: Adapter>(
    builder: SocketIoBuilder<A>,
    state: &SharedState,
) -> SocketIoBuilder<A> {
    let max = state.config.max_payload_bytes;
    builder
        .with_state(state.clone())
        .req_path(paths::SOCKET_IO.trim_end_matches('/').to_owned())
        .max_payload(max as u64)
        .ping_interval(state.config.ping_interval)
        .ping_timeout(state.config.ping_timeout)
        .max_buffer_size(state.config.send_buffer)
        // engine.io's max_payload covers only polling bodies; these bound WebSocket
        // messages: an oversized one closes that connection (transport error).
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        .ws_read_buffer_size(config::WS_READ_BUFFER_BYTES)
        .ws_write_window(state.config.write_window)
        // Binary attachments are buffered until a packet is complete: their sum is
        // bounded by our payload limit (socketioxide's default is 10 MB per socket, which
        // let 50 sockets pin 485 MB), their count by a small number, their wait by a
        // short timeout (a timer: vendor/socketioxide patch 0001).
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max)
                .max_incoming_binaries(config::MAX_ATTACHMENTS)
                .packet_completion_timeout(config::ATTACHMENT_COMPLETION_TIMEOUT),
        )
}

/// Registers the namespace; with the Redis adapter, once it has subscribed its channels.
pub async fn register<A: ServingAdapter>(io: &SocketIo<A>) -> Result<(), String> {
    A::add_namespace(
        io,
        defaults::NAMESPACE,
        on_connect::<A>.with(authenticate::<A>),
    )
    .await
}
