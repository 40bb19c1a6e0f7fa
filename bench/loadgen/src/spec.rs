//! What a worker process is asked to do, and what it answers: JSON lines
//! between the coordinator and `push-loadgen worker` over stdin/stdout.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::stats::StepStats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Websocket,
    Polling,
}

/// One worker's share of the clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Base URLs of the server nodes (`http://host:port`); client `g` goes to
    /// `urls[g % urls.len()]`.
    pub urls: Vec<String>,
    /// socket.io path, e.g. `/socket.io/`.
    pub socket_path: String,
    pub transport: Transport,
    /// Global index of this worker's first client.
    pub first_client: usize,
    pub clients: usize,
    /// Client `g` joins room `room_name(g % rooms)`; 0 = joins no room.
    pub rooms: usize,
    /// Local addresses to bind, round-robin per client.
    pub sources: Vec<Ipv4Addr>,
    /// New connections per second for this worker.
    pub connect_rate: f64,
    pub subscribe_event: String,
}

/// The benchmark's room names.
pub fn room_name(index: usize) -> String {
    format!("room-{index}")
}

/// Node and room of global client `g`: the one place that decides placement.
pub fn placement(g: usize, nodes: usize, rooms: usize) -> (usize, Option<usize>) {
    let node = g % nodes.max(1);
    let room = (rooms > 0).then(|| g % rooms);
    (node, room)
}

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Command {
    Report,
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WorkerMessage {
    /// Every connection attempt finished; `per_room` counts subscribed clients.
    Connected {
        ok: usize,
        failed: usize,
        per_room: Vec<u64>,
        first_errors: Vec<String>,
    },
    Report(WorkerReport),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Clients connected right now.
    pub open: usize,
    /// Clients that lost their connection after being connected.
    pub dropped: usize,
    pub unstamped: u64,
    pub steps: Vec<StepStats>,
    pub first_errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_table() {
        let cases = [
            ("single node, no rooms", 5, 1, 0, (0, None)),
            ("two nodes alternate", 3, 2, 10, (1, Some(3))),
            ("rooms wrap", 12, 1, 10, (0, Some(2))),
            ("zero nodes treated as one", 4, 0, 2, (0, Some(0))),
        ];
        for (name, g, nodes, rooms, want) in cases {
            assert_eq!(placement(g, nodes, rooms), want, "case {name}");
        }
    }

    #[test]
    fn messages_are_tagged_json_lines() {
        let line = serde_json::to_string(&Command::Report).expect("ser");
        assert_eq!(line, r#"{"cmd":"report"}"#);
        let msg = WorkerMessage::Connected {
            ok: 1,
            failed: 0,
            per_room: vec![1],
            first_errors: vec![],
        };
        let back: WorkerMessage =
            serde_json::from_str(&serde_json::to_string(&msg).expect("ser")).expect("de");
        assert!(matches!(back, WorkerMessage::Connected { ok: 1, .. }));
    }
}
