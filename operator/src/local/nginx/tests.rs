use super::*;

fn backend(name: &str, port: u16, accepts_new: bool) -> Backend {
    Backend {
        name: name.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: SocketAddr::from(([127, 0, 0, 1], port + 1000)),
        accepts_new,
    }
}

fn site(affinity: Affinity, backends: Vec<Backend>) -> Site {
    Site {
        dir: PathBuf::from("/tmp/x"),
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        affinity,
        backends,
    }
}

fn block<'a>(conf: &'a str, header: &str) -> &'a str {
    let start = conf
        .find(header)
        .unwrap_or_else(|| panic!("no {header} in\n{conf}"));
    let end = conf[start..]
        .find("  }")
        .map(|e| start + e)
        .unwrap_or(conf.len());
    &conf[start..end]
}

#[test]
fn client_address_affinity_hashes_the_address_over_accepting_nodes() {
    let conf = render(&site(
        Affinity::ClientAddress,
        vec![backend("a", 1001, true), backend("b", 1002, false)],
    ));
    let new = block(&conf, "upstream push_new {");
    assert!(new.contains("hash $remote_addr consistent;"), "{new}");
    assert!(
        !conf.contains("ip_hash"),
        "ip_hash folds 127.0.0.x into one key"
    );
    assert!(new.contains("127.0.0.1:1001"));
    assert!(
        !new.contains("127.0.0.1:1002"),
        "a draining node takes no new clients"
    );
    assert!(conf.contains("proxy_pass http://push_new;"));
    assert!(conf.contains("add_header Set-Cookie \"\" always;"));
}

#[test]
fn cookie_affinity_keeps_sessions_on_draining_nodes_but_no_handshakes() {
    let conf = render(&site(
        Affinity::Cookie { name: "aff".into() },
        vec![
            backend("a", 1001, true),
            backend("b", 1002, false),
            backend("c", 1003, true),
        ],
    ));
    assert!(
        conf.contains("\"~(^|;\\s*)aff=(?<node>[^;\\s]+)\" $node;"),
        "{conf}"
    );
    let sticky = block(&conf, "map $push_affinity $push_sticky {");
    assert!(
        sticky.contains("\"b\" push_node_1;"),
        "sessions on the draining node stay: {sticky}"
    );
    let handshake = block(&conf, "map $push_affinity $push_handshake {");
    assert!(
        !handshake.contains("\"b\""),
        "handshakes avoid the draining node: {handshake}"
    );
    let node_a = block(&conf, "upstream push_node_0 {");
    assert!(node_a.contains("server 127.0.0.1:1003 backup;"), "{node_a}");
    assert!(
        !node_a.contains("127.0.0.1:1002 backup"),
        "no fallback onto a draining node"
    );
    assert!(
        conf.contains(
            "\"~(^|[ ,])127\\.0\\.0\\.1:1002$\" \"aff=b; Path=/; HttpOnly; SameSite=Lax\";"
        )
    );
    assert!(conf.contains("proxy_pass http://$push_upstream;"));
    assert!(
        !block(&conf, "upstream push_new {").contains("hash"),
        "new clients spread round robin"
    );
}

#[test]
fn no_affinity_is_plain_round_robin() {
    let conf = render(&site(
        Affinity::Off,
        vec![backend("a", 1001, true), backend("b", 1002, true)],
    ));
    assert!(!conf.contains("hash"));
    assert!(!conf.contains("$http_cookie"));
}

#[test]
fn websockets_are_proxied() {
    let conf = render(&site(
        Affinity::ClientAddress,
        vec![backend("a", 1001, true)],
    ));
    for line in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 3600s;",
    ] {
        assert!(conf.contains(line), "missing {line}");
    }
}

#[test]
fn the_real_nginx_accepts_every_variant() {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("nginx is not installed: run .ci/setup");
    }
    let dir = std::env::temp_dir().join(format!("pushcluster-nginx-test-{}", std::process::id()));
    let variants = [
        Affinity::ClientAddress,
        Affinity::Cookie { name: "aff".into() },
        Affinity::Off,
    ];
    for affinity in variants {
        let mut s = site(
            affinity.clone(),
            vec![backend("a", 1001, true), backend("b", 1002, false)],
        );
        s.dir = dir.clone();
        if let Err(e) = Nginx::write(&s) {
            panic!("{affinity:?}: {e}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_api_front_spreads_over_every_server_port_and_only_those() {
    let conf = render(&site(
        Affinity::Cookie { name: "aff".into() },
        vec![backend("a", 1001, true), backend("b", 1002, false)],
    ));
    let api = block(&conf, "upstream push_api {");
    assert!(api.contains("127.0.0.1:2001"), "{api}");
    assert!(
        api.contains("127.0.0.1:2002"),
        "a draining node still publishes"
    );
    assert!(!api.contains(":1001") && !api.contains(":1002"), "{api}");
    assert!(conf.contains("listen 127.0.0.1:8081;"));
    assert!(conf.contains("proxy_pass http://push_api;"));
    for upstream in ["push_new", "push_node_0", "push_node_1"] {
        let client = block(&conf, &format!("upstream {upstream} {{"));
        assert!(
            !client.contains(":200"),
            "client upstreams never reach a server port: {client}"
        );
    }
}
