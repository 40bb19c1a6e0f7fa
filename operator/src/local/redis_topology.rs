//! Pure planning of local mode's managed Redis: which processes `spec.redis.managed.replicas`
//! asks for (one redis-server; or a primary, its replicas and three Sentinels), their
//! arguments, the Sentinels' configuration, and what a redis-server that died restarts as.
//! [`super::redis`] carries it out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::objects::sentinel::down_after_ms;
use push_contract::defaults::REDIS_SENTINEL_MASTER;

/// Sentinels watching a replicated Redis, and how many must agree that the primary is down.
pub const SENTINELS: usize = 3;
pub const QUORUM: usize = 2;
/// Sentinel timing: the primary is down after 2 s without an answer for the quorum (at
/// 1 s, a loaded 2-core machine made Sentinels take the just-promoted primary for down and
/// fail over a second time; each Sentinel's own value is staggered around it, see
/// [`down_after_ms`]); a failover that has not completed in 5 s is retried.
pub const DOWN_AFTER_MS: u32 = 2000;
pub const FAILOVER_TIMEOUT_MS: u32 = 5000;

/// What a process was started as (the state file's `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
    Sentinel,
}

/// The managed Redis of local mode: every process's address, the password they share and
/// the directory their files go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub primary: SocketAddr,
    pub replicas: Vec<SocketAddr>,
    /// Empty for a single redis-server (no failover).
    pub sentinels: Vec<SocketAddr>,
    pub password: String,
    pub workdir: PathBuf,
}

/// How to start one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub role: Role,
    pub addr: SocketAddr,
    /// `redis-server` arguments.
    pub args: Vec<String>,
    /// Its working directory (a redis-server's `--dir`; a Sentinel's config lives here).
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Topology {
    /// `replicas` redis-servers on the first addresses of `addrs`, then [`SENTINELS`]
    /// Sentinels when `replicas` > 1. `None` when `addrs` is too short for that.
    pub fn new(
        replicas: usize,
        addrs: &[SocketAddr],
        password: String,
        workdir: &Path,
    ) -> Option<Self> {
        let sentinels = if replicas > 1 { SENTINELS } else { 0 };
        let (primary, rest) = addrs.split_first()?;
        let replica_addrs = rest.get(..replicas.checked_sub(1)?)?.to_vec();
        let sentinel_addrs = rest.get(replica_addrs.len()..replica_addrs.len() + sentinels)?;
        Some(Self {
            primary: *primary,
            replicas: replica_addrs,
            sentinels: sentinel_addrs.to_vec(),
            password,
            workdir: workdir.to_owned(),
        })
    }

    /// Addresses a topology of `replicas` servers needs.
    pub fn addresses_needed(replicas: usize) -> usize {
        replicas.max(1) + if replicas > 1 { SENTINELS } else { 0 }
    }

    /// Whether Sentinels fail it over (replicas > 1).
    pub fn replicated(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// Every redis-server's address, the primary first.
    pub fn servers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.primary).chain(self.replicas.iter().copied())
    }

    /// Every process at start: the primary, the replicas (of the primary), the Sentinels.
    pub fn launches(&self) -> Vec<Launch> {
        let mut out = vec![self.server(self.primary, None)];
        out.extend(
            self.replicas
                .iter()
                .map(|r| self.server(*r, Some(self.primary))),
        );
        out.extend(self.sentinels.iter().map(|s| self.sentinel(*s)));
        out
    }

    /// The redis-server on `addr`, a replica of `primary` when given. Persistence as local
    /// mode always ran it: none. `noeviction`: history keys expire by TTL; evicting them
    /// would silently break the continuity promise.
    pub fn server(&self, addr: SocketAddr, primary: Option<SocketAddr>) -> Launch {
        // One redis-server keeps the work directory and log name it always had; several
        // get a directory each (a replica's full sync writes an RDB file there).
        let (dir, log) = if self.replicated() {
            let name = format!("redis-{}", addr.port());
            (
                self.workdir.join(&name),
                self.workdir.join(format!("{name}.log")),
            )
        } else {
            (self.workdir.clone(), self.workdir.join("redis.log"))
        };
        let mut args: Vec<String> = vec![
            "--bind".into(),
            addr.ip().to_string(),
            "--port".into(),
            addr.port().to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--requirepass".into(),
            self.password.clone(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        if self.replicated() {
            // Every server, the primary too: Sentinel may demote a primary it judged down
            // that is still running, which then syncs from the new one.
            args.extend(["--masterauth".into(), self.password.clone()]);
            // A replica (re)joining is sent the data at once, not after Redis's default 5 s
            // wait for more replicas to share the transfer with.
            args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
        }
        if let Some(primary) = primary {
            args.extend([
                "--replicaof".into(),
                primary.ip().to_string(),
                primary.port().to_string(),
            ]);
        }
        Launch {
            role: if primary.is_some() {
                Role::Replica
            } else {
                Role::Primary
            },
            addr,
            args,
            dir,
            log,
        }
    }

    /// The Sentinel on `addr`: `redis-server <its config file> --sentinel`.
    pub fn sentinel(&self, addr: SocketAddr) -> Launch {
        let name = format!("sentinel-{}", addr.port());
        Launch {
            role: Role::Sentinel,
            addr,
            args: vec![
                self.sentinel_conf_path(addr).display().to_string(),
                "--sentinel".into(),
            ],
            dir: self.workdir.clone(),
            log: self.workdir.join(format!("{name}.log")),
        }
    }

    /// Where the Sentinel on `addr` keeps its configuration (it rewrites the file itself
    /// as it learns replicas, other Sentinels and failovers).
    pub fn sentinel_conf_path(&self, addr: SocketAddr) -> PathBuf {
        self.workdir.join(format!("sentinel-{}.conf", addr.port()))
    }

    /// The configuration a Sentinel on `addr` starts from.
    pub fn sentinel_conf(&self, addr: SocketAddr) -> String {
        let name = REDIS_SENTINEL_MASTER;
        let (ip, port) = (self.primary.ip(), self.primary.port());
        let index = self.sentinels.iter().position(|s| *s == addr).unwrap_or(0);
        let down_after = down_after_ms(DOWN_AFTER_MS, u32::try_from(index).unwrap_or(0));
        [
            format!("port {}", addr.port()),
            format!("bind {}", addr.ip()),
            format!("sentinel monitor {name} {ip} {port} {QUORUM}"),
            format!("sentinel auth-pass {name} {}", self.password),
            format!("sentinel down-after-milliseconds {name} {down_after}"),
            format!("sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}"),
            format!("sentinel parallel-syncs {name} 1"),
        ]
        .join("\n")
            + "\n"
    }
}

/// What a redis-server that died restarts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A replica of the primary the Sentinels name.
    ReplicaOf(SocketAddr),
    /// A primary again: the Sentinels still name it and no other redis-server runs, so
    /// there is nothing else to promote and no replica's data to lose.
    Primary,
    /// Not yet: the Sentinels still name this server as the primary (a failover is under
    /// way) or none answered. Starting it empty as a primary now would make the replicas
    /// drop their copy of the data.
    Wait,
}

/// Decides what the redis-server on `own` restarts as, from the primary the Sentinels
/// name now (`None`: none answered) and whether any other redis-server runs.
pub fn restart_as(own: SocketAddr, named: Option<SocketAddr>, others_alive: bool) -> Restart {
    match named {
        Some(primary) if primary != own => Restart::ReplicaOf(primary),
        Some(_) if !others_alive => Restart::Primary,
        _ => Restart::Wait,
    }
}

/// Whether a Sentinel's `INFO sentinel` shows it watching `primary` (status ok) with all
/// `replicas` and all `sentinels` (itself included) known: failover can happen.
pub fn sentinel_ready(info: &str, primary: SocketAddr, replicas: usize, sentinels: usize) -> bool {
    let expected = [
        format!("name={REDIS_SENTINEL_MASTER}"),
        "status=ok".to_string(),
        format!("address={primary}"),
        format!("slaves={replicas}"),
        format!("sentinels={sentinels}"),
    ];
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .filter(|(key, _)| {
            key.strip_prefix("master")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|(_, fields)| {
            let fields: Vec<&str> = fields.split(',').collect();
            expected.iter().all(|want| fields.contains(&want.as_str()))
        })
}

#[cfg(test)]
mod tests;
