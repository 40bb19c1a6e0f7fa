//! Test-only: real /metrics servers standing in for pods, on loopback
//! addresses 127.0.0.2.. that share one port (pods share the admin port).
use axum::{Router, routing::get};
use push_contract::paths::METRICS;

/// /metrics servers on 127.0.0.2.., all on one port, each reporting `loads[i]`.
pub async fn fake_pods(loads: &[i64]) -> (u16, Vec<String>) {
    let listeners = same_port_listeners(loads.len()).await;
    let port = listeners[0].local_addr().expect("addr").port();
    let mut ips = Vec::new();
    for (listener, &n) in listeners.into_iter().zip(loads) {
        ips.push(listener.local_addr().expect("addr").ip().to_string());
        let text = format!(
            "# TYPE push_connections gauge\npush_connections{{transport=\"websocket\"}} {n}\n"
        );
        let app = Router::new().route(METRICS, get(move || async move { text }));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    (port, ips)
}

/// `n` listeners on 127.0.0.2.. sharing one port; a port taken on one of the
/// addresses (other tests run concurrently) means trying another.
async fn same_port_listeners(n: usize) -> Vec<tokio::net::TcpListener> {
    for _ in 0..50 {
        let first = tokio::net::TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind");
        let port = first.local_addr().expect("addr").port();
        let mut listeners = vec![first];
        for i in 1..n {
            match tokio::net::TcpListener::bind(format!("127.0.0.{}:{port}", i + 2)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == n {
            return listeners;
        }
    }
    panic!("no port free on 127.0.0.2..{} after 50 tries", n + 1);
}
