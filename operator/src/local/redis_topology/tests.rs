use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
    ports.iter().map(|p| addr(*p)).collect()
}

fn topology(replicas: usize) -> Topology {
    let ports: Vec<u16> = (7001..7001 + 10).collect();
    Topology::new(replicas, &addrs(&ports), "pw".into(), Path::new("/w")).expect("enough ports")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// (case, replicas, (role, port) of every process in start order)
type ProcessesCase = (&'static str, usize, Vec<(Role, u16)>);

#[test]
fn processes_per_replica_count() {
    let cases: Vec<ProcessesCase> = vec![
        ("one: a primary alone", 1, vec![(Role::Primary, 7001)]),
        (
            "two: a replica and three sentinels",
            2,
            vec![
                (Role::Primary, 7001),
                (Role::Replica, 7002),
                (Role::Sentinel, 7003),
                (Role::Sentinel, 7004),
                (Role::Sentinel, 7005),
            ],
        ),
        (
            "three: two replicas and three sentinels",
            3,
            vec![
                (Role::Primary, 7001),
                (Role::Replica, 7002),
                (Role::Replica, 7003),
                (Role::Sentinel, 7004),
                (Role::Sentinel, 7005),
                (Role::Sentinel, 7006),
            ],
        ),
    ];
    for (case, replicas, want) in cases {
        let t = topology(replicas);
        let got: Vec<(Role, u16)> = t
            .launches()
            .iter()
            .map(|l| (l.role, l.addr.port()))
            .collect();
        assert_eq!(got, want, "case {case:?}");
        assert_eq!(
            Topology::addresses_needed(replicas),
            want.len(),
            "case {case:?}"
        );
        assert_eq!(t.replicated(), replicas > 1, "case {case:?}");
    }
}

#[test]
fn too_few_addresses_or_no_server_is_no_topology() {
    let cases = [
        ("three need six addresses", 3, addrs(&[1, 2, 3, 4, 5])),
        ("one needs one", 1, Vec::new()),
        ("zero servers", 0, addrs(&[1, 2, 3])),
    ];
    for (case, replicas, given) in cases {
        assert_eq!(
            Topology::new(replicas, &given, "pw".into(), Path::new("/w")),
            None,
            "case {case:?}"
        );
    }
}

#[test]
fn server_arguments() {
    let one = topology(1);
    let three = topology(3);
    // (case, launch, expected args, dir, log)
    let cases = [
        (
            "one redis-server: as local mode always ran it",
            one.server(addr(7001), None),
            args(&[
                "--bind",
                "127.0.0.1",
                "--port",
                "7001",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                "pw",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                "/w",
            ]),
            "/w",
            "/w/redis.log",
        ),
        (
            "replicated primary: masterauth for a later demotion",
            three.server(addr(7001), None),
            args(&[
                "--bind",
                "127.0.0.1",
                "--port",
                "7001",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                "pw",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                "/w/redis-7001",
                "--masterauth",
                "pw",
                "--repl-diskless-sync-delay",
                "0",
            ]),
            "/w/redis-7001",
            "/w/redis-7001.log",
        ),
        (
            "replica of the primary",
            three.server(addr(7002), Some(addr(7001))),
            args(&[
                "--bind",
                "127.0.0.1",
                "--port",
                "7002",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                "pw",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                "/w/redis-7002",
                "--masterauth",
                "pw",
                "--repl-diskless-sync-delay",
                "0",
                "--replicaof",
                "127.0.0.1",
                "7001",
            ]),
            "/w/redis-7002",
            "/w/redis-7002.log",
        ),
        (
            "sentinel: its config file",
            three.sentinel(addr(7004)),
            args(&["/w/sentinel-7004.conf", "--sentinel"]),
            "/w",
            "/w/sentinel-7004.log",
        ),
    ];
    for (case, launch, want, dir, log) in cases {
        assert_eq!(launch.args, want, "case {case:?}");
        assert_eq!(launch.dir, Path::new(dir), "case {case:?}");
        assert_eq!(launch.log, Path::new(log), "case {case:?}");
    }
}

#[test]
fn sentinel_configuration() {
    let t = topology(3);
    assert_eq!(
        t.sentinel_conf(addr(7005)),
        "port 7005\n\
         bind 127.0.0.1\n\
         sentinel monitor pushcluster 127.0.0.1 7001 2\n\
         sentinel auth-pass pushcluster pw\n\
         sentinel down-after-milliseconds pushcluster 2000\n\
         sentinel failover-timeout pushcluster 5000\n\
         sentinel parallel-syncs pushcluster 1\n"
    );
    assert_eq!(REDIS_SENTINEL_MASTER, "pushcluster", "the contract's name");
}

/// Each Sentinel calls the primary down at its own time (no split vote), the second of
/// them (the quorum) at `DOWN_AFTER_MS`.
#[test]
fn sentinels_call_the_primary_down_one_after_another() {
    let t = topology(3);
    let down_after: Vec<String> = [7004, 7005, 7006]
        .iter()
        .map(|port| {
            let conf = t.sentinel_conf(addr(*port));
            conf.lines()
                .find_map(|l| l.strip_prefix("sentinel down-after-milliseconds pushcluster "))
                .unwrap_or("missing")
                .to_string()
        })
        .collect();
    assert_eq!(down_after, ["1250", "2000", "2750"]);
}

#[test]
fn a_dead_server_restarts_as_a_replica_of_the_primary_named_now() {
    let own = addr(7001);
    // (case, named primary, others alive, expected)
    let cases = [
        (
            "a replica died: follow the primary",
            Some(addr(7002)),
            true,
            Restart::ReplicaOf(addr(7002)),
        ),
        (
            "the primary died and a replica was promoted",
            Some(addr(7003)),
            true,
            Restart::ReplicaOf(addr(7003)),
        ),
        (
            "the primary died, failover under way: an empty primary would wipe the replicas",
            Some(own),
            true,
            Restart::Wait,
        ),
        ("no sentinel answers", None, true, Restart::Wait),
        (
            "no sentinel answers and nothing runs",
            None,
            false,
            Restart::Wait,
        ),
        (
            "every server died: the named primary comes back empty",
            Some(own),
            false,
            Restart::Primary,
        ),
        (
            "every server died, another one is named: wait for it as its replica",
            Some(addr(7002)),
            false,
            Restart::ReplicaOf(addr(7002)),
        ),
    ];
    for (case, named, others_alive, want) in cases {
        assert_eq!(restart_as(own, named, others_alive), want, "case {case:?}");
    }
}

#[test]
fn sentinels_are_ready_once_they_know_everyone() {
    let line = |fields: &str| format!("# Sentinel\r\nsentinel_masters:1\r\nmaster0:{fields}\r\n");
    // (case, INFO sentinel, ready)
    let cases = [
        (
            "all known",
            line("name=pushcluster,status=ok,address=127.0.0.1:7001,slaves=2,sentinels=3"),
            true,
        ),
        (
            "other sentinels not discovered yet",
            line("name=pushcluster,status=ok,address=127.0.0.1:7001,slaves=2,sentinels=1"),
            false,
        ),
        (
            "replicas not discovered yet",
            line("name=pushcluster,status=ok,address=127.0.0.1:7001,slaves=0,sentinels=3"),
            false,
        ),
        (
            "primary down",
            line("name=pushcluster,status=odown,address=127.0.0.1:7001,slaves=2,sentinels=3"),
            false,
        ),
        (
            "another primary",
            line("name=pushcluster,status=ok,address=127.0.0.1:7002,slaves=2,sentinels=3"),
            false,
        ),
        (
            "another master name",
            line("name=other,status=ok,address=127.0.0.1:7001,slaves=2,sentinels=3"),
            false,
        ),
        (
            "not a sentinel",
            "# Server\r\nredis_version:7.0\r\n".to_string(),
            false,
        ),
    ];
    for (case, info, ready) in cases {
        assert_eq!(
            sentinel_ready(&info, addr(7001), 2, 3),
            ready,
            "case {case:?}"
        );
    }
}
