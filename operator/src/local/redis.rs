//! The managed Redis of local mode, carried out: the processes [`redis_topology`] plans
//! for `spec.redis.managed.replicas` (one redis-server; or a primary, its replicas and
//! three Sentinels) on loopback, with a generated password and no persistence. All of them
//! answer (replicas linked, Sentinels knowing every server and each other) before
//! [`RedisServers::start`] returns, so push-servers start against a Redis that can fail
//! over. Supervised like the nodes (restart with backoff, the first one at once): a
//! redis-server comes back on its port, with replicas as a replica of the primary the
//! Sentinels name now; a Sentinel on its own (rewritten) configuration file.
//!
//! [`redis_topology`]: super::redis_topology

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use push_contract::defaults::REDIS_SENTINEL_MASTER;

use super::child::{Child, ChildError};
use super::error::LocalError;
use super::node::backoff;
use super::plan::LocalRedis;
use super::ports;
use super::redis_topology::{
    Launch, Restart, Role, SENTINELS, Topology, restart_as, sentinel_ready,
};
use super::resp;

/// How long start waits for each stage (servers, replication, Sentinels).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a restart asks one Sentinel for the primary (the supervisor's tick waits).
const ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// How often a restart waiting for a failover asks the Sentinels again.
const WAIT_RECHECK: Duration = Duration::from_millis(250);
/// A process that ran this long before dying starts its backoff from scratch.
const STABLE_RUN: Duration = Duration::from_secs(10);

/// One entry of the state file's `redis_servers`: the role is what the running process
/// was started as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessEntry {
    pub pid: i32,
    pub addr: SocketAddr,
    pub role: Role,
}

struct Process {
    /// How the running process was started.
    launch: Launch,
    child: Child,
    started: Instant,
    restarts: u32,
    /// Set when it exited: when to start it again.
    restart_at: Option<Instant>,
    /// Its restart waits for the Sentinels (logged once).
    waiting: bool,
}

impl Process {
    fn running(&self) -> bool {
        self.restart_at.is_none()
    }
}

/// The managed Redis's processes.
pub struct RedisServers {
    topology: Topology,
    processes: Vec<Process>,
}

impl RedisServers {
    /// Starts `replicas` redis-servers (and three Sentinels when more than one) in
    /// `workdir`, and waits until they work together. Dropped on error: nothing is left.
    pub async fn start(
        replicas: usize,
        password: String,
        workdir: &Path,
    ) -> Result<Self, LocalError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| LocalError::Io { what, source }
        };
        let addrs = ports::distinct(Topology::addresses_needed(replicas))
            .map_err(io("choosing the Redis ports"))?;
        let topology = Topology::new(replicas, &addrs, password, workdir).ok_or_else(|| {
            io("planning the Redis processes")(std::io::Error::other(
                "spec.redis.managed.replicas must be at least 1",
            ))
        })?;
        let mut this = Self {
            topology,
            processes: Vec::new(),
        };
        let launches = this.topology.launches();
        let (sentinels, servers): (Vec<Launch>, Vec<Launch>) =
            launches.into_iter().partition(|l| l.role == Role::Sentinel);
        for launch in servers {
            this.spawn(launch)?;
        }
        wait_for("redis-server", workdir, || this.servers_answer()).await?;
        if !this.topology.replicated() {
            return Ok(this);
        }
        wait_for("redis replicas (master_link_status:up)", workdir, || {
            this.replicas_linked()
        })
        .await?;
        for launch in sentinels {
            let path = this.topology.sentinel_conf_path(launch.addr);
            write_private(&path, &this.topology.sentinel_conf(launch.addr))
                .map_err(io(&format!("writing {}", path.display())))?;
            this.spawn(launch)?;
        }
        wait_for("redis sentinels", workdir, || this.sentinels_ready()).await?;
        tracing::info!(
            primary = %this.topology.primary,
            replicas = this.topology.replicas.len(),
            sentinels = this.topology.sentinels.len(),
            "redis replicated, sentinels watching"
        );
        Ok(this)
    }

    /// How push-servers reach it.
    pub fn link(&self) -> LocalRedis {
        LocalRedis {
            url: format!("redis://{}/0?protocol=resp3", self.topology.primary),
            password: self.topology.password.clone(),
            sentinels: self.topology.sentinels.clone(),
            replicas: 1 + self.topology.replicas.len(),
        }
    }

    /// The initial primary's address (the state file's `redis.addr`).
    pub fn primary(&self) -> SocketAddr {
        self.topology.primary
    }

    pub fn password(&self) -> &str {
        &self.topology.password
    }

    /// The pid of the process on the initial primary's address.
    pub fn primary_pid(&self) -> i32 {
        self.processes
            .iter()
            .find(|p| p.launch.addr == self.topology.primary)
            .map_or(0, |p| p.child.pid())
    }

    /// Every process, for the state file.
    pub fn entries(&self) -> Vec<ProcessEntry> {
        self.processes
            .iter()
            .map(|p| ProcessEntry {
                pid: p.child.pid(),
                addr: p.launch.addr,
                role: p.launch.role,
            })
            .collect()
    }

    /// One supervision round: notices exits and restarts what is due.
    pub async fn supervise(&mut self) {
        let now = Instant::now();
        for p in &mut self.processes {
            if p.running() && !p.child.alive() {
                if p.started.elapsed() >= STABLE_RUN {
                    p.restarts = 0;
                }
                let delay = restart_delay(p.restarts);
                tracing::warn!(addr = %p.launch.addr, role = ?p.launch.role, status = ?p.child.exit_status(), ?delay, "redis process exited: restarting");
                p.restart_at = Some(now + delay);
            }
        }
        for i in 0..self.processes.len() {
            if self.processes[i].restart_at.is_none_or(|at| now < at) {
                continue;
            }
            let launch = &self.processes[i].launch;
            let next = match launch.role {
                Role::Sentinel => launch.clone(),
                _ if !self.topology.replicated() => self.topology.server(launch.addr, None),
                _ => match self.restart_plan(i).await {
                    Some(next) => next,
                    None => continue,
                },
            };
            self.restart(i, next);
        }
    }

    /// What the redis-server `i` restarts as; `None` (rescheduled) while the Sentinels
    /// still name it as the primary.
    async fn restart_plan(&mut self, i: usize) -> Option<Launch> {
        let own = self.processes[i].launch.addr;
        let named = self.named_primary().await;
        let others_alive = self
            .processes
            .iter()
            .any(|p| p.launch.addr != own && p.launch.role != Role::Sentinel && p.running());
        let p = &mut self.processes[i];
        match restart_as(own, named, others_alive) {
            Restart::ReplicaOf(primary) => Some(self.topology.server(own, Some(primary))),
            Restart::Primary => {
                tracing::warn!(addr = %own, "every redis-server died: restarting the one the sentinels name as primary");
                Some(self.topology.server(own, None))
            }
            Restart::Wait => {
                if !p.waiting {
                    tracing::info!(addr = %own, named = ?named, "waiting for the sentinels to name a new primary before restarting as its replica");
                    p.waiting = true;
                }
                p.restart_at = Some(Instant::now() + WAIT_RECHECK);
                None
            }
        }
    }

    fn restart(&mut self, i: usize, launch: Launch) {
        let now = Instant::now();
        let spawned = spawn_child(&launch);
        let p = &mut self.processes[i];
        p.restarts += 1;
        p.waiting = false;
        match spawned {
            Ok(child) => {
                tracing::info!(addr = %launch.addr, role = ?launch.role, args = ?redacted(&launch.args), "redis process restarted");
                p.child = child;
                p.launch = launch;
                p.started = now;
                p.restart_at = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "restarting a redis process failed");
                p.restart_at = Some(now + backoff(p.restarts));
            }
        }
    }

    /// The primary the first live Sentinel that answers names now.
    async fn named_primary(&self) -> Option<SocketAddr> {
        let command = ["SENTINEL", "get-master-addr-by-name", REDIS_SENTINEL_MASTER];
        for p in &self.processes {
            if p.launch.role != Role::Sentinel || !p.running() {
                continue;
            }
            if let Some(reply) = resp::call(p.launch.addr, None, &command, ASK_TIMEOUT).await
                && let Some(primary) = resp::master_addr(&reply)
            {
                return Some(primary);
            }
        }
        None
    }

    fn spawn(&mut self, launch: Launch) -> Result<(), ChildError> {
        let child = spawn_child(&launch)?;
        self.processes.push(Process {
            launch,
            child,
            started: Instant::now(),
            restarts: 0,
            restart_at: None,
            waiting: false,
        });
        Ok(())
    }

    async fn servers_answer(&self) -> bool {
        let password = Some(self.topology.password.as_str());
        let pings = self.topology.servers().map(|addr| async move {
            resp::call(addr, password, &["PING"], PROBE_TIMEOUT)
                .await
                .is_some_and(|r| r.text() == Some("PONG"))
        });
        futures::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    async fn replicas_linked(&self) -> bool {
        let password = Some(self.topology.password.as_str());
        let infos = self.topology.replicas.iter().map(|addr| async move {
            let reply = resp::call(*addr, password, &["INFO", "replication"], PROBE_TIMEOUT).await;
            reply
                .as_ref()
                .and_then(resp::Reply::text)
                .and_then(|info| resp::info_field(info, "master_link_status"))
                == Some("up")
        });
        futures::future::join_all(infos)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    async fn sentinels_ready(&self) -> bool {
        let t = &self.topology;
        let infos = t.sentinels.iter().map(|addr| async move {
            let reply = resp::call(*addr, None, &["INFO", "sentinel"], PROBE_TIMEOUT).await;
            reply
                .as_ref()
                .and_then(resp::Reply::text)
                .is_some_and(|info| sentinel_ready(info, t.primary, t.replicas.len(), SENTINELS))
        });
        futures::future::join_all(infos)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// Stops every process: the Sentinels first (no failover while the servers stop).
    pub async fn stop(self) {
        let (sentinels, servers): (Vec<Process>, Vec<Process>) = self
            .processes
            .into_iter()
            .partition(|p| p.launch.role == Role::Sentinel);
        for group in [sentinels, servers] {
            futures::future::join_all(
                group
                    .into_iter()
                    .map(|p| p.child.stop(libc::SIGTERM, Duration::from_secs(3))),
            )
            .await;
        }
    }
}

/// Redis is what every node needs: its first restart is at once (as local mode always
/// did), further ones back off as a node's do (0.5 s doubling to 30 s).
fn restart_delay(restarts: u32) -> Duration {
    restarts.checked_sub(1).map_or(Duration::ZERO, backoff)
}

fn spawn_child(launch: &Launch) -> Result<Child, ChildError> {
    let name = match launch.role {
        Role::Sentinel => "redis-sentinel",
        _ => "redis-server",
    };
    std::fs::create_dir_all(&launch.dir).map_err(|source| ChildError::Spawn {
        what: format!("{name} (creating {})", launch.dir.display()),
        source,
    })?;
    let mut cmd = tokio::process::Command::new("redis-server");
    // The password shows in `ps` to local users: acceptable for loopback-only servers of
    // local mode (in Kubernetes it comes from a Secret).
    cmd.args(&launch.args).current_dir(&launch.dir);
    Child::spawn(name, cmd, &launch.log)
}

/// Arguments as logged: no password.
fn redacted(args: &[String]) -> Vec<&str> {
    let mut out = Vec::with_capacity(args.len());
    let mut secret_next = false;
    for arg in args {
        out.push(if secret_next { "***" } else { arg.as_str() });
        secret_next = arg == "--requirepass" || arg == "--masterauth";
    }
    out
}

/// Creates (or replaces) `path`, owner-only: a Sentinel's configuration holds the password.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Polls `ready` every 100 ms up to [`START_TIMEOUT`].
pub async fn wait_for<F, Fut>(what: &str, workdir: &Path, mut ready: F) -> Result<(), LocalError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LocalError::NotReady(
        what.into(),
        START_TIMEOUT.as_secs(),
        workdir.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_at_once_then_backoff() {
        let cases = [(0, 0), (1, 500), (2, 1000), (4, 4000), (20, 30_000)];
        for (restarts, ms) in cases {
            assert_eq!(
                restart_delay(restarts),
                Duration::from_millis(ms),
                "after {restarts} restarts"
            );
        }
    }

    #[test]
    fn passwords_are_not_logged() {
        let args: Vec<String> = [
            "--port",
            "1",
            "--requirepass",
            "pw",
            "--masterauth",
            "pw",
            "--dir",
            "/w",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            redacted(&args),
            [
                "--port",
                "1",
                "--requirepass",
                "***",
                "--masterauth",
                "***",
                "--dir",
                "/w"
            ]
        );
    }
}
