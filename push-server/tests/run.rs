//! In-process tests through the same `run` the binary calls: bind 127.0.0.1:0,
//! drive the node over real HTTP, shut it down through `Shutdown`.

use std::{future::Future, time::Duration};

use clap::Parser;
use push_contract::{metrics, paths};
use push_server::{Config, Listeners, Shutdown, config::Cli, run};
use tokio::{net::TcpListener, task::JoinHandle};

const TOKEN: &str = "in-process-token";

struct Node {
    client: String,
    admin: String,
    task: JoinHandle<Result<(), push_server::RunError>>,
    http: reqwest::Client,
}

/// Starts a node on 127.0.0.1:0 that stops when `shutdown` fires.
async fn start(shutdown: Shutdown, extra: &[&str]) -> Node {
    let mut argv = vec![
        "push-server",
        "--api-token",
        TOKEN,
        "--max-payload-bytes",
        "1000",
    ];
    argv.extend_from_slice(extra);
    let config = Config::from_cli(Cli::try_parse_from(argv).expect("flags")).expect("valid config");
    let client = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Node {
        client: format!("http://{}", client.local_addr().expect("addr")),
        admin: format!("http://{}", admin.local_addr().expect("addr")),
        task: tokio::spawn(run(Listeners { client, admin }, config, shutdown)),
        // No pooling: each request on its own connection, like a client behind a proxy.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client"),
    }
}

/// Polls `probe` until it yields `true`, failing after 10 s.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Node {
    async fn status(&self, url: String) -> u16 {
        self.http
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn ready(&self) -> u16 {
        self.status(format!("{}{}", self.admin, paths::READYZ))
            .await
    }

    async fn publish(&self, token: Option<&str>, body: String) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{}", self.admin, paths::PUBLISH))
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("publish");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// Engine.IO handshake plus socket.io CONNECT over long-polling.
    /// Returns the session id.
    async fn open_polling_socket(&self, handshake: &str) -> String {
        let open = self.http.get(handshake).send().await.expect("handshake");
        assert_eq!(open.status().as_u16(), 200);
        let open = open.text().await.expect("body");
        let sid = open
            .split('"')
            .nth(3)
            .expect("the open packet carries the sid")
            .to_owned();
        let connect = self
            .http
            .post(format!("{handshake}&sid={sid}"))
            .body("40")
            .send()
            .await
            .expect("connect");
        assert_eq!(connect.status().as_u16(), 200);
        sid
    }

    /// POSTs an Engine.IO pong for `sid`: 200 while the session is served.
    async fn poll_status(&self, handshake: &str, sid: &str) -> u16 {
        self.http
            .post(format!("{handshake}&sid={sid}"))
            .body("3")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn metrics(&self) -> String {
        let url = format!("{}{}", self.admin, paths::METRICS);
        self.http
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

#[tokio::test]
async fn health_metrics_and_publish_api() {
    let node = start(Shutdown::new(), &[]).await;
    eventually("ready", || async { node.ready().await == 200 }).await;
    assert_eq!(
        node.status(format!("{}{}", node.admin, paths::HEALTHZ))
            .await,
        200
    );
    // Metrics and the publish API live on the server port only; the demo page is off
    // unless asked for.
    assert_eq!(
        node.status(format!("{}{}", node.client, paths::METRICS))
            .await,
        404
    );
    let on_client_port = node
        .http
        .post(format!("{}{}", node.client, paths::PUBLISH))
        .bearer_auth(TOKEN)
        .body(r#"{"event":"e","room":"r","data":1}"#)
        .send()
        .await
        .expect("publish on the client port");
    assert_eq!(
        on_client_port.status().as_u16(),
        404,
        "publish API on the client port"
    );
    assert_eq!(
        node.status(format!("{}/", node.client)).await,
        404,
        "demo page off"
    );

    let cases = [
        (
            "no token",
            None,
            r#"{"event":"e","room":"r"}"#.to_owned(),
            401,
        ),
        ("bad json", Some(TOKEN), "{".to_owned(), 400),
        (
            "too large",
            Some(TOKEN),
            format!(
                r#"{{"event":"e","room":"r","data":"{}"}}"#,
                "x".repeat(2000)
            ),
            413,
        ),
        (
            "accepted",
            Some(TOKEN),
            r#"{"event":"e","room":"r"}"#.to_owned(),
            202,
        ),
    ];
    for (name, token, body, want) in cases {
        let (status, text) = node.publish(token, body).await;
        assert_eq!(status, want, "case {name}: {text}");
    }
    let text = node.metrics().await;
    assert!(text.contains(&format!(
        "{}{{{}=\"websocket\"}} 0",
        metrics::CONNECTIONS,
        metrics::TRANSPORT
    )));
    assert!(
        text.contains("source=\"http\",result=\"too_large\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains(metrics::REDIS_UP),
        "single node has no redis gauge"
    );
    node.task.abort();
}

#[tokio::test]
async fn drain_flips_readiness_refuses_handshakes_and_returns() {
    let shutdown = Shutdown::new();
    // No settle: the first batch is due at once (e2e/push_server/test_resilience.py
    // covers the settle before it).
    let node = start(
        shutdown.clone(),
        &["--drain-seconds", "4", "--drain-settle-ms", "0"],
    )
    .await;
    eventually("ready", || async { node.ready().await == 200 }).await;
    let handshake = format!(
        "{}{}?EIO=4&transport=polling",
        node.client,
        paths::SOCKET_IO
    );
    // Two sockets over a 4 s window: the second batch is due 2 s in, so the node is
    // still draining (not gone) while the checks below run.
    let mut sids = Vec::new();
    for _ in 0..2 {
        sids.push(node.open_polling_socket(&handshake).await);
    }
    let polling_gauge = format!(
        "{}{{{}=\"polling\"}} 2",
        metrics::CONNECTIONS,
        metrics::TRANSPORT
    );
    eventually("two polling sockets", || async {
        node.metrics().await.contains(&polling_gauge)
    })
    .await;

    shutdown.drain.cancel();
    eventually("not ready", || async { node.ready().await == 503 }).await;
    assert_eq!(
        node.status(handshake.clone()).await,
        503,
        "new handshakes refused while draining"
    );
    assert!(
        node.metrics()
            .await
            .contains(&format!("{} 1", metrics::DRAINING))
    );
    // First batch (at 0 s): one session moved off. No connection of it is open (the
    // client does not pool), so it is its next request that is refused.
    let mut statuses = Vec::new();
    for sid in &sids {
        statuses.push(node.poll_status(&handshake, sid).await);
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 400],
        "one moved off in the first batch, one still served"
    );
    let result = tokio::time::timeout(Duration::from_secs(10), node.task).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "run did not return Ok after the drain"
    );
}

#[tokio::test]
async fn unreachable_redis_keeps_the_node_unready_until_stopped() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let shutdown = Shutdown::new();
    let node = start(shutdown.clone(), &["--redis-url", &url]).await;
    eventually("admin up", || async { node.ready().await == 503 }).await;
    let body = node
        .http
        .get(format!("{}{}", node.admin, paths::READYZ))
        .send()
        .await
        .expect("r");
    assert!(body.text().await.expect("t").contains("starting"));
    shutdown.drain.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), node.task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))));
}

#[tokio::test]
async fn demo_page_only_when_asked_for() {
    let node = start(Shutdown::new(), &["--demo-page", "true"]).await;
    eventually("ready", || async { node.ready().await == 200 }).await;
    assert_eq!(node.status(format!("{}/", node.client)).await, 200);
    assert_eq!(
        node.status(format!("{}/", node.admin)).await,
        404,
        "the page is for clients: not on the server port"
    );
}
