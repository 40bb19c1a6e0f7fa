//! Ending a socket when its token expires.

use push_contract::socket::AUTH_EXPIRED;
use socketioxide::{adapter::Adapter, extract::SocketRef};

/// The timer that ends a socket when its token expires; aborted when it leaves first,
/// so a long-lived token holds nothing for a socket that is gone.
#[derive(Clone)]
struct ExpiryTimer(tokio::task::AbortHandle);

/// A token is checked at the handshake only; without this, a socket kept receiving its
/// user's messages long after its JWT expired. At `exp` it is told why, then disconnected.
pub(super) fn expire_at<A: Adapter>(socket: &SocketRef<A>, exp: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let wait = std::time::Duration::from_secs_f64((exp as f64 - now).max(0.0));
    let socket2 = socket.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        tracing::info!(sid = %socket2.id, exp, "token expired: disconnecting");
        let _ = socket2.emit(
            AUTH_EXPIRED,
            &serde_json::json!({ "reason": "token expired: reconnect with a fresh token", "exp": exp }),
        );
        let _ = socket2.disconnect();
    });
    socket.extensions.insert(ExpiryTimer(timer.abort_handle()));
    // Gone before the timer was stored: on_disconnect could not abort it.
    if !socket.connected() {
        timer.abort();
    }
}

/// Aborts the socket's expiry timer, if it has one (the socket is leaving).
pub(super) fn cancel<A: Adapter>(socket: &SocketRef<A>) {
    if let Some(ExpiryTimer(timer)) = socket.extensions.get::<ExpiryTimer>() {
        timer.abort();
    }
}
