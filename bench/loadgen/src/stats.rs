//! Delivery counters and latency histograms, per benchmark step and server node.
//!
//! Workers record into [`Recorder`]; they ship [`StepStats`] to the
//! coordinator as JSON (histograms as base64 V2), which merges them.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::protocol::Stamp;

/// Highest latency the histograms track: 60 s, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Nanoseconds since the Unix epoch: the publish stamp's clock.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One (step, node) cell while recording.
struct Cell {
    received: u64,
    last_received_ns: u64,
    latency_us: Histogram<u64>,
}

/// Per-worker recorder, shared by the worker's client tasks.
#[derive(Default)]
pub struct Recorder {
    cells: BTreeMap<(u32, usize), Cell>,
    /// Events that carried no benchmark stamp.
    pub unstamped: u64,
}

impl Recorder {
    /// Records one delivery of `stamp` on a client of `node`, received at `now_ns`.
    pub fn record(&mut self, node: usize, stamp: Stamp, now_ns: u64) {
        let cell = self
            .cells
            .entry((stamp.step, node))
            .or_insert_with(|| Cell {
                received: 0,
                last_received_ns: 0,
                latency_us: new_histogram(),
            });
        cell.received += 1;
        cell.last_received_ns = cell.last_received_ns.max(now_ns);
        let latency_us = now_ns.saturating_sub(stamp.ts) / 1_000;
        cell.latency_us
            .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
    }

    pub fn snapshot(&self) -> Result<Vec<StepStats>, StatsError> {
        self.cells
            .iter()
            .map(|(&(step, node), cell)| {
                Ok(StepStats {
                    step,
                    node,
                    received: cell.received,
                    last_received_ns: cell.last_received_ns,
                    latency_us: encode_histogram(&cell.latency_us)?,
                })
            })
            .collect()
    }
}

/// What a worker reports for one (step, node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStats {
    pub step: u32,
    pub node: usize,
    pub received: u64,
    pub last_received_ns: u64,
    /// Base64 of the V2-serialized latency histogram (microseconds).
    pub latency_us: String,
}

pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, StatsError> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| StatsError::Histogram(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, StatsError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| StatsError::Histogram(format!("{e:?}")))
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_keeps_steps_and_nodes_apart_and_round_trips() {
        let mut r = Recorder::default();
        r.record(
            0,
            Stamp {
                ts: 1_000_000,
                step: 1,
            },
            3_000_000,
        ); // 2 ms
        r.record(
            0,
            Stamp {
                ts: 1_000_000,
                step: 1,
            },
            5_000_000,
        ); // 4 ms
        r.record(
            1,
            Stamp {
                ts: 1_000_000,
                step: 1,
            },
            2_000_000,
        ); // 1 ms
        let snap = r.snapshot().expect("snapshot");
        assert_eq!(snap.len(), 2);
        assert_eq!(
            (snap[0].node, snap[0].received, snap[0].last_received_ns),
            (0, 2, 5_000_000)
        );
        let h = decode_histogram(&snap[0].latency_us).expect("decode");
        assert_eq!(h.len(), 2);
        let lat = Latency::of(&h);
        assert!((lat.max_ms - 4.0).abs() < 0.01, "{lat:?}");
        assert_eq!(snap[1].received, 1);
    }

    #[test]
    fn clock_skew_records_as_minimum_not_panic() {
        let mut r = Recorder::default();
        r.record(0, Stamp { ts: 10, step: 0 }, 5);
        assert_eq!(r.snapshot().expect("snapshot")[0].received, 1);
    }

    #[test]
    fn empty_histogram_has_zero_latency() {
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }
}
