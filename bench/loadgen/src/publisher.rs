//! Paced publishing through the publish API, each message stamped with its
//! send time and step so clients can measure publish→delivery latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use push_contract::PublishRequest;
use tokio::sync::Semaphore;

use crate::protocol::Stamp;
use crate::spec::room_name;
use crate::stats::unix_nanos;

/// The benchmark's event name (ours, not part of the contract).
pub const BENCH_EVENT: &str = "bench";
/// Requests in flight at most; beyond that the publisher falls behind its rate.
const MAX_IN_FLIGHT: usize = 256;

pub struct Publisher {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// What one publishing phase did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PublishOutcome {
    /// Accepted (2xx) publishes per room.
    pub accepted_per_room: Vec<u64>,
    pub accepted: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Publishes per second actually achieved.
    pub achieved_rate: f64,
    pub start_ns: u64,
    pub elapsed_s: f64,
}

impl PublishOutcome {
    /// Deliveries expected: each accepted publish reaches every member of its room.
    pub fn expected_deliveries(&self, members_per_room: &[u64]) -> u64 {
        self.accepted_per_room
            .iter()
            .zip(members_per_room)
            .map(|(p, m)| p * m)
            .sum()
    }
}

/// The publish body for `room` at `stamp`.
pub fn publish_body(room: usize, stamp: Stamp) -> PublishRequest {
    PublishRequest {
        event: BENCH_EVENT.to_string(),
        data: serde_json::json!({ "ts": stamp.ts, "step": stamp.step }),
        room: Some(room_name(room)),
        user: None,
        broadcast: false,
        namespace: None,
        origin_us: None,
        idempotency_key: None,
    }
}

impl Publisher {
    pub fn new(base_url: &str, token: &str) -> Result<Publisher, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = format!(
            "{}{}",
            base_url.trim_end_matches('/'),
            push_contract::paths::PUBLISH
        );
        Ok(Publisher {
            http,
            url,
            token: token.to_string(),
        })
    }

    /// Publishes `rate` messages/s for `duration`, rooms in turn, all in `step`.
    pub async fn run(
        &self,
        step: u32,
        rooms: usize,
        rate: f64,
        duration: Duration,
    ) -> PublishOutcome {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let start = Instant::now();
        let start_ns = unix_nanos();
        let mut tasks = Vec::with_capacity(total as usize);
        for n in 0..total {
            let due = start + gap.mul_f64(n as f64);
            tokio::time::sleep_until(due.into()).await;
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                break;
            };
            let room = (n as usize) % rooms.max(1);
            let body = publish_body(
                room,
                Stamp {
                    ts: unix_nanos(),
                    step,
                },
            );
            let request = self
                .http
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&body);
            tasks.push(tokio::spawn(async move {
                let result = match request.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err(format!("publish answered {}", resp.status())),
                    Err(e) => Err(format!("publish failed: {e}")),
                };
                drop(permit);
                (room, result)
            }));
        }
        let mut outcome = PublishOutcome {
            accepted_per_room: vec![0; rooms.max(1)],
            start_ns,
            ..Default::default()
        };
        for task in tasks {
            match task.await {
                Ok((room, Ok(()))) => {
                    outcome.accepted += 1;
                    outcome.accepted_per_room[room] += 1;
                }
                Ok((_, Err(e))) => {
                    outcome.failed += 1;
                    outcome.first_error.get_or_insert(e);
                }
                Err(e) => {
                    outcome.failed += 1;
                    outcome.first_error.get_or_insert(e.to_string());
                }
            }
        }
        outcome.elapsed_s = start.elapsed().as_secs_f64();
        outcome.achieved_rate =
            (outcome.accepted + outcome.failed) as f64 / outcome.elapsed_s.max(1e-9);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_body_is_the_contract_shape_with_a_stamp() {
        let body = serde_json::to_value(publish_body(3, Stamp { ts: 42, step: 1 })).expect("ser");
        assert_eq!(
            body,
            serde_json::json!({"event":"bench","data":{"ts":42,"step":1},"room":"room-3"})
        );
    }

    #[test]
    fn expected_deliveries_weighs_publishes_by_room_size() {
        let outcome = PublishOutcome {
            accepted_per_room: vec![2, 3],
            ..Default::default()
        };
        assert_eq!(outcome.expected_deliveries(&[10, 1]), 23);
        assert_eq!(
            outcome.expected_deliveries(&[]),
            0,
            "no members, nothing expected"
        );
    }
}
