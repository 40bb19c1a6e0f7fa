//! `push-loadgen worker`: one process holding a share of the clients.
//!
//! Several of these run side by side because one process may hold at most
//! ~19,900 open files. Protocol: the spec as a JSON argument; one
//! `connected` line on stdout once every connection attempt is over; then a
//! `report` line per `{"cmd":"report"}` read on stdin; exit on stdin EOF.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::client::{self, ClientPlan, Shared};
use crate::spec::{
    Command, Transport, WorkerMessage, WorkerReport, WorkerSpec, placement, room_name,
};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker spec is not valid JSON: {0}")]
    Spec(#[from] serde_json::Error),
    #[error("worker spec has no server URL or no source address")]
    EmptySpec,
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
    #[error("stats: {0}")]
    Stats(#[from] crate::stats::StatsError),
}

pub fn main(spec_json: &str) -> Result<(), WorkerError> {
    let spec: WorkerSpec = serde_json::from_str(spec_json)?;
    if spec.urls.is_empty() || spec.sources.is_empty() {
        return Err(WorkerError::EmptySpec);
    }
    // One thread: the generator is pinned to one CPU and runs several processes.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(spec))
}

async fn run(spec: WorkerSpec) -> Result<(), WorkerError> {
    let shared = Arc::new(Shared::default());
    let http: Vec<reqwest::Client> = spec
        .sources
        .iter()
        .map(|ip| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(*ip))
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(90))
                .timeout(Duration::from_secs(90))
                .build()
        })
        .collect::<Result<_, _>>()?;

    let mut pending = Vec::with_capacity(spec.clients);
    let gap = Duration::from_secs_f64(1.0 / spec.connect_rate.max(1.0));
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..spec.clients {
        ticker.tick().await;
        let g = spec.first_client + i;
        let (node, room) = placement(g, spec.urls.len(), spec.rooms);
        let source_index = i % spec.sources.len();
        let plan = ClientPlan {
            base_url: spec.urls[node].clone(),
            node,
            socket_path: spec.socket_path.clone(),
            room: room.map(room_name),
            source: spec.sources[source_index],
            subscribe_event: spec.subscribe_event.clone(),
        };
        let (tx, rx) = oneshot::channel();
        let shared = Arc::clone(&shared);
        match spec.transport {
            Transport::Websocket => {
                tokio::spawn(async move { client::run_websocket(plan, &shared, tx).await })
            }
            Transport::Polling => {
                let http = http[source_index].clone();
                tokio::spawn(async move { client::run_polling(plan, http, &shared, tx).await })
            }
        };
        pending.push((room, rx));
    }

    let mut per_room = vec![0u64; spec.rooms];
    let (mut ok, mut failed) = (0, 0);
    for (room, rx) in pending {
        match rx.await {
            Ok(Ok(())) => {
                ok += 1;
                if let Some(r) = room {
                    per_room[r] += 1;
                }
            }
            Ok(Err(e)) => {
                failed += 1;
                shared.keep_error(e);
            }
            Err(_) => failed += 1,
        }
    }
    let first_errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let mut out = tokio::io::stdout();
    write_line(
        &mut out,
        &WorkerMessage::Connected {
            ok,
            failed,
            per_room,
            first_errors,
        },
    )
    .await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Command>(&line) {
            Ok(Command::Report) => {
                write_line(&mut out, &WorkerMessage::Report(report(&shared)?)).await?
            }
            Err(e) => eprintln!("worker: ignoring bad command {line:?}: {e}"),
        }
    }
    Ok(())
}

fn report(shared: &Shared) -> Result<WorkerReport, WorkerError> {
    let (steps, unstamped) = match shared.recorder.lock() {
        Ok(rec) => (rec.snapshot()?, rec.unstamped),
        Err(_) => (Vec::new(), 0),
    };
    Ok(WorkerReport {
        open: shared.open.load(Ordering::Relaxed),
        dropped: shared.dropped.load(Ordering::Relaxed),
        unstamped,
        steps,
        first_errors: shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
    })
}

async fn write_line(out: &mut tokio::io::Stdout, msg: &WorkerMessage) -> Result<(), WorkerError> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}
