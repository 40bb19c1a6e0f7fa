use super::*;
use axum::{Router, http::StatusCode, routing::get};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use std::time::Instant;

/// The exposition push-server writes, produced by the same encoder it uses.
fn exposition(websocket: i64, polling: i64) -> String {
    use prometheus_client::encoding::{EncodeLabelSet, text::encode};
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        transport: String,
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let family = Family::<Labels, Gauge>::default();
    registry.register(CONNECTIONS, "Live connections", family.clone());
    let other = Gauge::<i64>::default();
    other.set(99);
    registry.register(format!("{CONNECTIONS}_peak"), "a look-alike", other);
    for (t, n) in [("websocket", websocket), ("polling", polling)] {
        family
            .get_or_create(&Labels {
                transport: t.into(),
            })
            .set(n);
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("encode");
    out
}

#[test]
fn parse_connections_table() {
    let encoded = exposition(7, 5);
    let cases: [(&str, &str, Result<i64, &str>); 9] = [
        (
            "push-server's own encoder: sum over transports, look-alike ignored",
            &encoded,
            Ok(12),
        ),
        (
            "no labels, timestamp after the value",
            "push_connections 3 1700000000000\n",
            Ok(3),
        ),
        (
            "quoted label value containing } and a space",
            "push_connections{transport=\"a } b\",x=\"\\\"\"} 4\n",
            Ok(4),
        ),
        (
            "float value is truncated",
            "push_connections{transport=\"websocket\"} 2.0\n",
            Ok(2),
        ),
        ("metric absent", "# HELP other x\nother 1\n", Err("missing")),
        (
            "value not a number",
            "push_connections{transport=\"ws\"} many\n",
            Err("bad"),
        ),
        ("negative value", "push_connections -1\n", Err("bad")),
        ("NaN", "push_connections NaN\n", Err("bad")),
        (
            "unclosed label set",
            "push_connections{transport=\"ws 1\n",
            Err("bad"),
        ),
    ];
    for (case, text, want) in cases {
        let got = parse_connections(text);
        match (want, &got) {
            (Ok(n), Ok(g)) => assert_eq!(*g, n, "case: {case}"),
            (Err("missing"), Err(ScrapeError::MissingMetric)) => {}
            (Err("bad"), Err(ScrapeError::BadSample { .. })) => {}
            _ => panic!("case: {case}: want {want:?}, got {got:?}"),
        }
    }
}

fn pod(name: &str, ip: Option<&str>, ready: &str, terminating: bool) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    if terminating {
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    }
    p.status = Some(PodStatus {
        pod_ip: ip.map(String::from),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: ready.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

#[test]
fn targets_are_running_pods_with_an_ip_and_their_readiness() {
    let pods = [
        pod("ready", Some("10.0.0.1"), "True", false),
        pod("not-ready", Some("10.0.0.2"), "False", false),
        pod("no-ip", None, "True", false),
        pod("terminating", Some("10.0.0.3"), "True", true),
        pod("ipv6", Some("fd00::7"), "True", false),
    ];
    let got = targets_from_pods(&pods, 9090);
    assert_eq!(
        got,
        vec![
            ScrapeTarget {
                name: "ready".into(),
                url: "http://10.0.0.1:9090/metrics".into(),
                ready: true,
            },
            ScrapeTarget {
                name: "not-ready".into(),
                url: "http://10.0.0.2:9090/metrics".into(),
                ready: false,
            },
            ScrapeTarget {
                name: "ipv6".into(),
                url: "http://[fd00::7]:9090/metrics".into(),
                ready: true,
            },
        ]
    );
}

/// Serve `router` on a free loopback port; the task ends with the test runtime.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn a_hanging_pod_is_unmeasured_and_does_not_block_the_others() {
    let ok = serve(Router::new().route(METRICS, get(|| async { exposition(3, 1) }))).await;
    let hang = serve(Router::new().route(
        METRICS,
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            String::new()
        }),
    ))
    .await;
    let failing =
        serve(Router::new().route(METRICS, get(|| async { StatusCode::INTERNAL_SERVER_ERROR })))
            .await;
    let garbage =
        serve(Router::new().route(METRICS, get(|| async { "push_connections oops" }))).await;
    // A port nobody listens on: bind, note it, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let targets = [
        ScrapeTarget::new("ok", ok),
        ScrapeTarget::new("hang", hang),
        ScrapeTarget::new("failing", failing),
        ScrapeTarget::new("garbage", garbage),
        ScrapeTarget::new("closed", closed),
    ];
    // Generous enough that the healthy pod answers even on a loaded CI machine.
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let loads = ready_loads(&scrape_all(&client(timeout), &targets, timeout).await);
    let took = started.elapsed();
    assert_eq!(
        loads,
        vec![
            PodLoad::measured("ok", 4),
            PodLoad::unmeasured("hang"),
            PodLoad::unmeasured("failing"),
            PodLoad::unmeasured("garbage"),
            PodLoad::unmeasured("closed"),
        ]
    );
    // Concurrent and bounded: about one timeout, not one per pod (5 s) and not the 30 s hang.
    assert!(took < Duration::from_secs(4), "scrape took {took:?}");
}

#[tokio::test]
async fn an_oversized_body_counts_as_no_answer() {
    let big = serve(Router::new().route(
        METRICS,
        get(|| async { format!("push_connections 1\n{}", "#".repeat(MAX_BODY_BYTES)) }),
    ))
    .await;
    let got = scrape(&client(SCRAPE_TIMEOUT), &ScrapeTarget::new("big", big).url).await;
    assert_eq!(got, Err(ScrapeError::TooLarge));
}

#[test]
fn the_redis_link_is_read_from_a_pods_metrics() {
    let text = format!(
        "# HELP {REDIS_UP} Redis link state\n# TYPE {REDIS_UP} gauge\n{REDIS_UP} 1\n\
         {REDIS_PRIMARY}{{{ADDRESS}=\"10.0.0.5:6379\"}} 1\n\
         {REDIS_LAST_FAILOVER} 1796570000\n{CONNECTIONS}{{transport=\"websocket\"}} 3\n"
    );
    assert_eq!(
        parse_redis(&text),
        Some(PodRedis {
            up: true,
            primary: Some("10.0.0.5:6379".into()),
            last_failover: Some(1_796_570_000),
        })
    );
    let never_moved = format!("{REDIS_UP} 0\n{REDIS_LAST_FAILOVER} 0\n");
    assert_eq!(
        parse_redis(&never_moved),
        Some(PodRedis {
            up: false,
            primary: None,
            last_failover: None,
        })
    );
    assert_eq!(
        parse_redis(&format!("{CONNECTIONS} 1\n")),
        None,
        "a pod without Redis reports no link"
    );
    assert_eq!(
        parse_redis(&format!(
            "{REDIS_UP} one\n{REDIS_PRIMARY}{{{ADDRESS}=\"x\" 1\n"
        )),
        None,
        "malformed lines are skipped, not a panic"
    );
}

#[test]
fn the_links_of_all_pods_name_the_primary_most_use() {
    let pod = |up: bool, primary: Option<&str>, last_failover: Option<i64>| Scraped {
        load: PodLoad::measured("p", 0),
        ready: up,
        redis: Some(PodRedis {
            up,
            primary: primary.map(str::to_owned),
            last_failover,
        }),
    };
    let links = RedisLinks::of(&[
        pod(true, Some("a:1"), Some(10)),
        pod(true, Some("b:1"), Some(20)),
        pod(true, Some("b:1"), None),
        pod(false, Some("a:1"), Some(5)),
        Scraped {
            load: PodLoad::unmeasured("silent"),
            ready: false,
            redis: None,
        },
    ]);
    assert_eq!(
        links,
        RedisLinks {
            pods: 4,
            up: 3,
            primary: Some("b:1".into()),
            last_failover: Some(20),
        }
    );
    assert_eq!(RedisLinks::of(&[]), RedisLinks::default());
}
