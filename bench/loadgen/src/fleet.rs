//! The coordinator's side of the workers: spawn them, wait until their
//! clients are connected, ask for reports and merge them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Stdio;

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::spec::{Command as WorkerCommand, WorkerMessage, WorkerReport, WorkerSpec};
use crate::stats::{self, new_histogram};

/// Clients per worker process: well under the 20,000 open-file limit, and
/// under the ~28k ports of one (source, destination) pair.
pub const MAX_CLIENTS_PER_WORKER: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot start worker {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("worker io: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker exited without answering")]
    WorkerGone,
    #[error("worker sent something unexpected: {0}")]
    Unexpected(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stats: {0}")]
    Stats(#[from] stats::StatsError),
}

struct Worker {
    pid: u32,
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn read(&mut self) -> Result<WorkerMessage, FleetError> {
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or(FleetError::WorkerGone)?;
        serde_json::from_str(&line).map_err(|_| FleetError::Unexpected(line))
    }
}

/// What the workers connected, summed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectOutcome {
    pub ok: usize,
    pub failed: usize,
    pub per_room: Vec<u64>,
    pub first_errors: Vec<String>,
}

/// Deliveries of one step, merged over workers.
pub struct StepDeliveries {
    pub received: u64,
    pub last_received_ns: u64,
    pub latency_us: Histogram<u64>,
    pub latency_us_by_node: BTreeMap<usize, Histogram<u64>>,
}

/// Every report of one round, merged.
pub struct FleetReport {
    pub open: usize,
    pub dropped: usize,
    pub unstamped: u64,
    pub steps: BTreeMap<u32, StepDeliveries>,
    pub first_errors: Vec<String>,
}

impl FleetReport {
    pub fn received(&self, step: u32) -> u64 {
        self.steps.get(&step).map_or(0, |s| s.received)
    }
}

pub struct Fleet {
    workers: Vec<Worker>,
}

/// Splits `clients` (starting at global index `first`) into worker-sized specs,
/// each bound to its own loopback source address.
pub fn plan_workers(
    template: &WorkerSpec,
    first: usize,
    clients: usize,
    source_offset: usize,
) -> Vec<WorkerSpec> {
    let count = clients.div_ceil(MAX_CLIENTS_PER_WORKER).max(1);
    (0..count)
        .map(|w| {
            let start = w * clients / count;
            let end = (w + 1) * clients / count;
            let mut spec = template.clone();
            spec.first_client = first + start;
            spec.clients = end - start;
            spec.connect_rate = template.connect_rate / count as f64;
            // 127.0.0.2 onwards; the servers listen on 127.0.0.1.
            let octet = 2 + ((source_offset + w) % 250) as u8;
            spec.sources = vec![Ipv4Addr::new(127, 0, 0, octet)];
            spec
        })
        .collect()
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet {
            workers: Vec::new(),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The generator's processes: this one (the publisher) and every worker.
    pub fn generator_pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id())
            .chain(self.workers.iter().map(|w| w.pid))
            .collect()
    }

    /// Starts one worker per spec and waits until every client attempt is over.
    pub async fn add(&mut self, specs: Vec<WorkerSpec>) -> Result<ConnectOutcome, FleetError> {
        let exe = std::env::current_exe()?;
        let first_new = self.workers.len();
        for spec in &specs {
            let mut child = Command::new(&exe)
                .arg("worker")
                .arg(serde_json::to_string(spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| FleetError::Spawn(exe.display().to_string(), e))?;
            let stdin = child.stdin.take().ok_or(FleetError::WorkerGone)?;
            let stdout = BufReader::new(child.stdout.take().ok_or(FleetError::WorkerGone)?).lines();
            let pid = child.id().unwrap_or(0);
            self.workers.push(Worker {
                pid,
                _child: child,
                stdin,
                stdout,
            });
        }
        let mut outcome = ConnectOutcome::default();
        for worker in &mut self.workers[first_new..] {
            match worker.read().await? {
                WorkerMessage::Connected {
                    ok,
                    failed,
                    per_room,
                    first_errors,
                } => {
                    outcome.ok += ok;
                    outcome.failed += failed;
                    add_counts(&mut outcome.per_room, &per_room);
                    outcome.first_errors.extend(first_errors);
                }
                other => return Err(FleetError::Unexpected(format!("{other:?}"))),
            }
        }
        outcome.first_errors.truncate(8);
        Ok(outcome)
    }

    /// Asks every worker for its counters and merges them.
    pub async fn report(&mut self) -> Result<FleetReport, FleetError> {
        let request = format!("{}\n", serde_json::to_string(&WorkerCommand::Report)?);
        for worker in &mut self.workers {
            worker.stdin.write_all(request.as_bytes()).await?;
            worker.stdin.flush().await?;
        }
        let mut reports = Vec::with_capacity(self.workers.len());
        for worker in &mut self.workers {
            match worker.read().await? {
                WorkerMessage::Report(r) => reports.push(r),
                other => return Err(FleetError::Unexpected(format!("{other:?}"))),
            }
        }
        merge(reports)
    }
}

fn add_counts(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

fn merge(reports: Vec<WorkerReport>) -> Result<FleetReport, FleetError> {
    let mut merged = FleetReport {
        open: 0,
        dropped: 0,
        unstamped: 0,
        steps: BTreeMap::new(),
        first_errors: Vec::new(),
    };
    for r in reports {
        merged.open += r.open;
        merged.dropped += r.dropped;
        merged.unstamped += r.unstamped;
        merged.first_errors.extend(r.first_errors);
        for s in r.steps {
            let h = stats::decode_histogram(&s.latency_us)?;
            let step = merged
                .steps
                .entry(s.step)
                .or_insert_with(|| StepDeliveries {
                    received: 0,
                    last_received_ns: 0,
                    latency_us: new_histogram(),
                    latency_us_by_node: BTreeMap::new(),
                });
            step.received += s.received;
            step.last_received_ns = step.last_received_ns.max(s.last_received_ns);
            let _ = step.latency_us.add(&h);
            let _ = step
                .latency_us_by_node
                .entry(s.node)
                .or_insert_with(new_histogram)
                .add(&h);
        }
    }
    merged.first_errors.truncate(8);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Transport;

    fn template(rate: f64) -> WorkerSpec {
        WorkerSpec {
            urls: vec!["http://127.0.0.1:1".into()],
            socket_path: "/socket.io/".into(),
            transport: Transport::Websocket,
            first_client: 0,
            clients: 0,
            rooms: 0,
            sources: vec![],
            connect_rate: rate,
            subscribe_event: "subscribe".into(),
        }
    }

    #[test]
    fn plan_workers_covers_every_client_once_on_distinct_sources() {
        let specs = plan_workers(&template(1000.0), 100, 12_001, 0);
        assert_eq!(specs.len(), 3);
        assert_eq!(specs.iter().map(|s| s.clients).sum::<usize>(), 12_001);
        assert_eq!(specs[0].first_client, 100);
        assert_eq!(specs[1].first_client, 100 + specs[0].clients);
        assert!(specs.iter().all(|s| s.clients <= MAX_CLIENTS_PER_WORKER));
        assert_ne!(specs[0].sources, specs[1].sources);
        assert!((specs.iter().map(|s| s.connect_rate).sum::<f64>() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn plan_workers_for_a_tiny_run_is_one_worker() {
        let specs = plan_workers(&template(10.0), 0, 3, 4);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].sources, vec![Ipv4Addr::new(127, 0, 0, 6)]);
    }

    #[test]
    fn add_counts_grows_to_the_longer() {
        let mut total = vec![1, 2];
        add_counts(&mut total, &[1, 1, 5]);
        assert_eq!(total, vec![2, 3, 5]);
    }
}
