//! The ReplicaSet-like loop of local mode. Every tick it reaps dead processes, restarts
//! crashed nodes with backoff, polls readiness, applies manifest edits through
//! [`plan::next_step`], keeps nginx's view in line, and publishes a status snapshot.
//! All decisions live in `plan`; this file only carries them out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch as tokio_watch};

use super::child::Child;
use super::error::LocalError;
use super::nginx::{Backend, Nginx, Site};
use super::node::{Node, Phase, backoff};
use super::options::Options;
use super::plan::{self, Affinity, NodeSlot, NodeView, SecretValues};
use super::ports;
use super::redis::RedisServers;
use super::resolved::{self, Resolved};
use super::secrets::{self, SecretSources};
use super::state_file;
use super::watch::{self as manifest, ManifestWatch};
use crate::resources::AutoscalingSpec;
use push_contract::local_mode::{API_ENDPOINT_PREFIX, API_TOKEN_PREFIX, ENDPOINT_PREFIX};
use push_contract::paths;

const TICK: Duration = Duration::from_millis(200);
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a draining node gets beyond its drain window (its settle before the window, then
/// its exit) before it is killed.
const DRAIN_MARGIN: Duration = Duration::from_secs(15);

/// Requests from outside the loop (the local autoscaler).
#[derive(Debug, Clone)]
pub enum Control {
    /// Run `replicas` nodes; on scale-in drain these names first.
    Scale {
        replicas: usize,
        drain_first: Vec<String>,
    },
}

/// One node as the status snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub pid: i32,
    pub client: SocketAddr,
    pub admin: SocketAddr,
    /// One of the `push_contract::local_mode::PHASE_*` names.
    pub phase: &'static str,
    pub restarts: u32,
}

/// The supervisor's outside interface: send [`Control`]s, watch the nodes.
#[derive(Clone)]
pub struct Handle {
    pub control: mpsc::Sender<Control>,
    pub nodes: tokio_watch::Receiver<Vec<NodeStatus>>,
    /// `spec.autoscaling` of the manifest the supervisor last applied (a bad edit
    /// keeps the previous one, as it keeps the running cluster).
    pub autoscaling: tokio_watch::Receiver<Option<AutoscalingSpec>>,
}

pub struct Supervisor {
    options: Options,
    binary: PathBuf,
    workdir: PathBuf,
    front: SocketAddr,
    /// Where backends publish (every node's server port behind nginx).
    api_front: SocketAddr,
    sources: SecretSources,
    watch: ManifestWatch,
    resolved: Resolved,
    /// Set by [`Control::Scale`] until the manifest's own replicas change.
    scale_override: Option<(usize, Vec<String>)>,
    nodes: Vec<Node>,
    next_ordinal: u64,
    redis: Option<RedisServers>,
    nginx: Option<Nginx>,
    http: reqwest::Client,
    announced: bool,
    control_rx: mpsc::Receiver<Control>,
    status_tx: tokio_watch::Sender<Vec<NodeStatus>>,
    autoscaling_tx: tokio_watch::Sender<Option<AutoscalingSpec>>,
    last_state: String,
    /// A scale-out started nodes: one rebalance round once they are all Ready.
    rebalance_due: bool,
    /// Nodes moving clients off for a rebalance, until when: new clients go elsewhere.
    shedding: std::collections::HashMap<String, Instant>,
}

impl Supervisor {
    /// Reads the manifest, starts Redis (managed) and prepares the loop.
    pub async fn start(
        options: Options,
        binary: PathBuf,
        workdir: PathBuf,
    ) -> Result<(Self, Handle), LocalError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| LocalError::Io { what, source }
        };
        let mut watch = ManifestWatch::new(&options.manifest);
        let text = watch.changed()?.unwrap_or_default();
        let cluster = manifest::parse(&options.manifest, &text)?;
        let front = ports::front(options.port).map_err(io("choosing the front port"))?;
        let api_front = ports::api_front(front).map_err(io("choosing the API front port"))?;
        let redis = match &cluster.spec.redis.managed {
            Some(managed) => {
                let replicas = usize::try_from(managed.replicas).unwrap_or(1);
                Some(RedisServers::start(replicas, secrets::generate_token(), &workdir).await?)
            }
            None => None,
        };
        let sources = SecretSources {
            dir: options.secrets_dir.clone(),
        };
        let previous = SecretValues::new();
        let ctx = context(
            &options,
            &binary,
            &workdir,
            &sources,
            redis.as_ref(),
            &previous,
        );
        let (resolved, token) = resolved::resolve(cluster, &ctx)?;
        if let Some(token) = token {
            println!("{API_TOKEN_PREFIX}{token}");
        }
        let (control, control_rx) = mpsc::channel(16);
        let (status_tx, nodes) = tokio_watch::channel(Vec::new());
        let (autoscaling_tx, autoscaling) =
            tokio_watch::channel(resolved.cluster.spec.autoscaling.clone());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .map_err(|e| LocalError::Io {
                what: "building the HTTP client".into(),
                source: std::io::Error::other(e),
            })?;
        let supervisor = Self {
            options,
            binary,
            workdir,
            front,
            api_front,
            sources,
            watch,
            resolved,
            scale_override: None,
            nodes: Vec::new(),
            next_ordinal: 0,
            redis,
            nginx: None,
            http,
            announced: false,
            control_rx,
            status_tx,
            autoscaling_tx,
            last_state: String::new(),
            rebalance_due: false,
            shedding: Default::default(),
        };
        Ok((
            supervisor,
            Handle {
                control,
                nodes,
                autoscaling,
            },
        ))
    }

    /// Supervises until `shutdown` completes or a fatal error; stops everything either way.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), LocalError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                Some(control) = self.control_rx.recv() => match control {
                    Control::Scale { replicas, drain_first } => {
                        self.scale_override = Some((replicas, drain_first));
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = self.tick().await {
                        break Err(e);
                    }
                }
            }
        };
        self.stop().await;
        result
    }

    async fn tick(&mut self) -> Result<(), LocalError> {
        self.poll_manifest();
        self.reap();
        self.restart_due();
        self.check_readiness().await?;
        if let Some(redis) = &mut self.redis {
            redis.supervise().await;
        }
        self.step();
        self.rebalance().await;
        self.route()?;
        self.announce().await;
        self.publish_status();
        Ok(())
    }

    /// Applies an edited manifest; a bad edit is reported and the running one kept.
    fn poll_manifest(&mut self) {
        let text = match self.watch.changed() {
            Ok(Some(text)) => text,
            Ok(None) => return,
            Err(e) => {
                return tracing::error!(error = %e, "manifest unreadable: keeping the running cluster");
            }
        };
        let resolved = manifest::parse(self.watch.path(), &text)
            .map_err(LocalError::from)
            .and_then(|cluster| {
                let ctx = context(
                    &self.options,
                    &self.binary,
                    &self.workdir,
                    &self.sources,
                    self.redis.as_ref(),
                    &self.resolved.secrets,
                );
                resolved::resolve(cluster, &ctx)
            });
        match resolved {
            Ok((resolved, token)) => {
                if let Some(token) = token {
                    println!("{API_TOKEN_PREFIX}{token}");
                }
                if resolved.replicas != self.resolved.replicas {
                    self.scale_override = None;
                }
                tracing::info!(replicas = resolved.replicas, "manifest changed: applying");
                self.autoscaling_tx
                    .send_replace(resolved.cluster.spec.autoscaling.clone());
                self.resolved = resolved;
            }
            Err(e) => eprintln!(
                "error: {e}\n(keeping the running cluster; fix the manifest and save again)"
            ),
        }
    }

    /// Notices exits: a draining node is gone for good, any other one is restarted later.
    fn reap(&mut self) {
        let now = Instant::now();
        self.nodes.retain_mut(|node| {
            let alive = node.child.as_mut().is_some_and(Child::alive);
            match node.phase {
                _ if alive => true,
                Phase::Draining { .. } => {
                    tracing::info!(node = %node.slot.name, "drained and stopped");
                    false
                }
                Phase::Crashed { .. } => true,
                Phase::Starting { .. } | Phase::Ready => {
                    node.crashed(now);
                    true
                }
            }
        });
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let reserved = self.reserved_ports();
        for i in 0..self.nodes.len() {
            if let Phase::Crashed { restart_at } = self.nodes[i].phase
                && now >= restart_at
            {
                let node = &mut self.nodes[i];
                node.restarts += 1;
                node.move_if_crash_looping(&reserved);
                if let Err(e) = node.spawn(&self.binary, &self.workdir) {
                    tracing::error!(error = %e, "restart failed");
                    node.phase = Phase::Crashed {
                        restart_at: now + backoff(node.restarts),
                    };
                }
            }
        }
    }

    fn add_node(&mut self) -> Result<(), LocalError> {
        let (client, admin) =
            ports::consecutive_pair(&self.reserved_ports()).map_err(|source| LocalError::Io {
                what: "choosing node ports".into(),
                source,
            })?;
        let slot = NodeSlot {
            name: format!("{}-{}", self.resolved.cluster.name, self.next_ordinal),
            client,
            admin,
        };
        let env = {
            let locate = |name: &str, key: &str| self.sources.locate(name, key);
            plan::node_env(
                &self.resolved.template,
                &slot,
                &self.resolved.overrides,
                &self.resolved.secrets,
                &locate,
            )?
        };
        tracing::info!(node = %slot.name, %client, %admin, "starting push-server");
        let mut node = Node::new(slot, self.next_ordinal, self.resolved.fingerprint, env);
        self.next_ordinal += 1;
        node.spawn(&self.binary, &self.workdir)?;
        self.nodes.push(node);
        Ok(())
    }

    /// Every port this supervisor handed out: the front doors, each node's pair, each
    /// redis-server's and Sentinel's (one being restarted is not listening right now).
    fn reserved_ports(&self) -> HashSet<u16> {
        let nodes = self
            .nodes
            .iter()
            .flat_map(|n| [n.slot.client.port(), n.slot.admin.port()]);
        let redis = self
            .redis
            .iter()
            .flat_map(RedisServers::entries)
            .map(|e| e.addr.port());
        [self.front.port(), self.api_front.port()]
            .into_iter()
            .chain(nodes)
            .chain(redis)
            .collect()
    }

    async fn check_readiness(&mut self) -> Result<(), LocalError> {
        let probes = self.nodes.iter().map(|node| {
            let starting = matches!(node.phase, Phase::Starting { .. });
            let url = format!("http://{}{}", node.slot.admin, push_contract::paths::READYZ);
            let http = self.http.clone();
            async move {
                if !starting {
                    return false;
                }
                matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
            }
        });
        let results = futures::future::join_all(probes).await;
        for (node, answered) in self.nodes.iter_mut().zip(results) {
            if let Phase::Starting { since } = node.phase {
                // The answer counts only while the node runs: one that died since is
                // reaped on the next tick, not announced.
                let ready = answered && node.child.as_mut().is_some_and(Child::alive);
                if ready {
                    tracing::info!(node = %node.slot.name, "ready");
                    node.phase = Phase::Ready;
                    node.routed = true;
                } else if !self.announced && since.elapsed() > START_TIMEOUT {
                    return Err(LocalError::NotReady(
                        node.slot.name.clone(),
                        START_TIMEOUT.as_secs(),
                        self.workdir.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One [`plan::next_step`]: start new nodes, drain victims.
    fn step(&mut self) {
        let (replicas, prefer) = match &self.scale_override {
            Some((replicas, prefer)) => (*replicas, prefer.clone()),
            None => (self.resolved.replicas, Vec::new()),
        };
        let views: Vec<NodeView> = self
            .nodes
            .iter()
            .map(|n| NodeView {
                name: n.slot.name.clone(),
                ordinal: n.ordinal,
                fingerprint: n.fingerprint,
                ready: n.phase == Phase::Ready,
                draining: matches!(n.phase, Phase::Draining { .. }),
            })
            .collect();
        let step = plan::next_step(&views, replicas, self.resolved.fingerprint, &prefer);
        // A scale-out (not the first nodes, not a crash restart): rebalance once they are up.
        if step.start > 0 && !views.is_empty() {
            self.rebalance_due = true;
        }
        for _ in 0..step.start {
            if let Err(e) = self.add_node() {
                tracing::error!(error = %e, "starting a node failed");
                break;
            }
        }
        let window = Duration::from_secs(self.resolved.drain_seconds) + DRAIN_MARGIN;
        for name in step.drain {
            if let Some(node) = self.nodes.iter_mut().find(|n| n.slot.name == name) {
                tracing::info!(node = %name, "draining");
                node.phase = Phase::Draining {
                    deadline: Instant::now() + window,
                };
                if let Some(child) = &mut node.child {
                    child.signal(libc::SIGTERM);
                }
            }
        }
        let now = Instant::now();
        for node in &mut self.nodes {
            if let (Phase::Draining { deadline }, Some(child)) = (node.phase, &mut node.child)
                && now > deadline
            {
                tracing::warn!(node = %node.slot.name, "drain overran its window: killing");
                child.signal(libc::SIGKILL);
            }
        }
    }

    /// After a scale-out, once no node is starting: the nodes above their share move the
    /// surplus ([`crate::autoscale::rebalance`]), and nginx sends new handshakes (theirs
    /// included, whatever their cookie names) to the others meanwhile.
    async fn rebalance(&mut self) {
        use crate::autoscale::rebalance;
        use crate::autoscale::scrape::{SCRAPE_TIMEOUT, ScrapeTarget, ready_loads, scrape_all};
        let now = Instant::now();
        self.shedding.retain(|_, until| *until > now);
        let spec = self.resolved.cluster.spec.rebalance();
        if !self.rebalance_due || !spec.enabled {
            self.rebalance_due &= spec.enabled;
            return;
        }
        if self.nodes.iter().any(|n| n.phase != Phase::Ready) {
            return;
        }
        self.rebalance_due = false;
        let targets: Vec<ScrapeTarget> = self
            .nodes
            .iter()
            .map(|n| ScrapeTarget::new(&n.slot.name, n.slot.admin))
            .collect();
        let loads = ready_loads(&scrape_all(&self.http, &targets, SCRAPE_TIMEOUT).await);
        let token_ref = crate::objects::deployment::api_token_secret(&self.resolved.cluster);
        let Some(token) = self
            .resolved
            .secrets
            .get(&(token_ref.name.clone(), token_ref.key.clone()))
        else {
            return tracing::warn!("rebalance skipped: no API token");
        };
        let window = Duration::from_secs(u64::try_from(spec.window_seconds).unwrap_or(20));
        for m in rebalance::moves(&loads) {
            let Some(node) = self.nodes.iter().find(|n| n.slot.name == m.pod) else {
                continue;
            };
            // nginx stops sending it handshakes at this tick's reload.
            let settle = Duration::from_secs(1);
            match rebalance::request(
                &self.http,
                node.slot.admin,
                token,
                m.connections,
                spec.window_seconds,
                settle,
            )
            .await
            {
                Ok(moving) => {
                    tracing::info!(node = %m.pod, moving, window_seconds = spec.window_seconds, "{}", push_contract::local_mode::REBALANCE_MESSAGE);
                    self.shedding.insert(
                        m.pod.clone(),
                        now + settle + window + Duration::from_secs(1),
                    );
                }
                Err(e) => tracing::warn!(node = %m.pod, error = %e, "rebalance refused"),
            }
        }
    }

    /// Starts or updates nginx with the routed nodes.
    fn route(&mut self) -> Result<(), LocalError> {
        let affinity = if self.options.no_affinity {
            Affinity::Off
        } else {
            self.resolved.affinity.clone()
        };
        let backends: Vec<Backend> = self
            .nodes
            .iter()
            .filter(|n| n.routed)
            .map(|n| Backend {
                name: n.slot.name.clone(),
                addr: n.slot.client,
                admin: n.slot.admin,
                accepts_new: !matches!(n.phase, Phase::Draining { .. })
                    && !self.shedding.contains_key(&n.slot.name),
            })
            .collect();
        let site = Site {
            dir: self.workdir.join("nginx"),
            listen: self.front,
            api_listen: self.api_front,
            affinity,
            backends,
        };
        match &mut self.nginx {
            None if site.backends.is_empty() => {}
            None => self.nginx = Some(Nginx::start(site)?),
            Some(nginx) => {
                if let Err(e) = nginx.restart_if_dead() {
                    tracing::error!(error = %e, "restarting nginx failed");
                }
                nginx.update(site)?;
            }
        }
        Ok(())
    }

    /// Prints the endpoints once both front doors answer with every initial node ready
    /// (the client front with anything but a gateway error: `/` is the demo page or 404).
    async fn announce(&mut self) {
        if self.announced || self.nginx.is_none() {
            return;
        }
        let ready = self
            .nodes
            .iter()
            .filter(|n| n.phase == Phase::Ready)
            .count();
        if ready < self.resolved.replicas {
            return;
        }
        let url = format!("http://{}", self.front);
        let api_url = format!("http://{}", self.api_front);
        let client_front = self.http.get(format!("{url}/")).send().await;
        let api_front = self
            .http
            .get(format!("{api_url}{}", paths::READYZ))
            .send()
            .await;
        if matches!(client_front, Ok(r) if !r.status().is_server_error())
            && matches!(api_front, Ok(r) if r.status().is_success())
        {
            println!("{ENDPOINT_PREFIX}{url}");
            println!("{API_ENDPOINT_PREFIX}{api_url}");
            self.announced = true;
        }
    }

    fn publish_status(&mut self) {
        let nodes: Vec<NodeStatus> = self
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.slot.name.clone(),
                pid: n.child.as_ref().map(Child::pid).unwrap_or(0),
                client: n.slot.client,
                admin: n.slot.admin,
                phase: n.phase_name(),
                restarts: n.restarts,
            })
            .collect();
        self.status_tx.send_if_modified(|old| {
            let changed = *old != nodes;
            if changed {
                old.clone_from(&nodes);
            }
            changed
        });
        if let Some(path) = &self.options.state_file {
            let state = serde_json::json!({
                "endpoint": format!("http://{}", self.front),
                "api_endpoint": format!("http://{}", self.api_front),
                "ready": self.announced,
                "workdir": self.workdir,
                "nodes": nodes,
                "nginx": self.nginx.as_ref().map(|n| serde_json::json!({"pid": n.pid(), "conf": n.site().dir.join("nginx.conf")})),
                "redis": self.redis.as_ref().map(|r| serde_json::json!({"pid": r.primary_pid(), "addr": r.primary(), "password": r.password()})),
                "redis_servers": self.redis.as_ref().map(RedisServers::entries).unwrap_or_default(),
            });
            let text = state.to_string();
            if text != self.last_state && state_file::write(path, &text).is_ok() {
                self.last_state = text;
            }
        }
    }

    /// Stops everything: nginx first (no new traffic), nodes at once (a second SIGTERM
    /// cuts the drain short), Redis last (its Sentinels first).
    async fn stop(mut self) {
        if let Some(nginx) = self.nginx.take() {
            nginx.stop().await;
        }
        let mut stopping = Vec::new();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                child.signal(libc::SIGTERM);
                stopping.push(child);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        futures::future::join_all(
            stopping
                .into_iter()
                .map(|c| c.stop(libc::SIGTERM, Duration::from_secs(3))),
        )
        .await;
        if let Some(redis) = self.redis.take() {
            redis.stop().await;
        }
        if let Some(path) = &self.options.state_file {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("stopped nginx, every push-server, redis-server and sentinel");
    }
}

fn context<'a>(
    options: &'a Options,
    binary: &'a std::path::Path,
    workdir: &'a std::path::Path,
    sources: &'a SecretSources,
    redis: Option<&RedisServers>,
    previous: &'a SecretValues,
) -> resolved::Context<'a> {
    resolved::Context {
        binary,
        workdir,
        sources,
        redis: redis.map(RedisServers::link),
        previous,
        affinity_override: options.no_affinity.then_some(Affinity::Off),
    }
}
