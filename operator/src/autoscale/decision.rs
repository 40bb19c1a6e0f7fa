//! The autoscaling decision: a pure function from measurements, the current
//! replica count and a recommendation history to a [`Plan`].
//!
//! It follows the Kubernetes HPA (`replica_calculator.go` and the `behavior`
//! stabilisation), with connections as the metric:
//! - raw recommendation = `ceil(total / targetConnectionsPerPod)`, or the current
//!   count when the load per measured pod is within [`TOLERANCE`] of the target;
//! - pods that did not answer count as 0 connections when the answered pods
//!   point up, and as exactly at target when they point down, so missing data
//!   can slow a scale-up but never cause a scale-down; when the missing pods flip
//!   the direction, nothing changes;
//! - scale up to the lowest recommendation of the scale-up window, down to the
//!   highest of the scale-down window (so oscillating load holds replicas up);
//! - at most `maxScaleInStep` pods removed per step, always within min..max.

use super::load::{Measurement, PodLoad};
use super::scale_in::choose_victims;
use crate::resources::AutoscalingSpec;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The HPA's default tolerance: load within ±10 % of the target changes nothing.
pub const TOLERANCE: f64 = 0.1;

/// The autoscaling knobs of one PushCluster, in the units the decision uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_connections_per_pod: i64,
    pub scale_up_window: Duration,
    pub scale_down_window: Duration,
    pub max_scale_in_step: i32,
}

impl From<&AutoscalingSpec> for Policy {
    /// The CRD schema already bounds every field; the `max(..)`s only keep a
    /// spec that bypassed validation from dividing by zero or inverting bounds.
    fn from(spec: &AutoscalingSpec) -> Self {
        let min_replicas = spec.min_replicas.max(1);
        Self {
            min_replicas,
            max_replicas: spec.max_replicas.max(min_replicas),
            target_connections_per_pod: spec.target_connections_per_pod.max(1),
            scale_up_window: seconds(spec.scale_up_stabilization_seconds),
            scale_down_window: seconds(spec.scale_down_stabilization_seconds),
            max_scale_in_step: spec.max_scale_in_step.max(1),
        }
    }
}

fn seconds(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// The raw recommendations of the last windows, kept in memory per PushCluster.
/// An operator restart or a leader change starts with an empty history: the
/// first steps after it then scale down sooner than a full window would allow
/// (scale-up is unaffected); the scale-in step cap still bounds that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    entries: VecDeque<(Instant, i32)>,
}

impl History {
    /// Remember `replicas` as recommended at `at`, forgetting what is older than `keep`.
    pub fn record(&mut self, at: Instant, replicas: i32, keep: Duration) {
        self.entries.push_back((at, replicas));
        while let Some(&(oldest, _)) = self.entries.front() {
            if at.saturating_duration_since(oldest) > keep {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// Recommendations younger than `window` at `now`.
    fn within(&self, now: Instant, window: Duration) -> impl Iterator<Item = i32> + '_ {
        self.entries
            .iter()
            .filter(move |(at, _)| now.saturating_duration_since(*at) < window)
            .map(|&(_, r)| r)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where a step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Hold,
    Up,
    Down,
}

/// The outcome of one autoscaling step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The replica count to set (equal to the current one on [`Direction::Hold`]).
    pub replicas: i32,
    /// This step's raw recommendation, within bounds: what goes into the history
    /// and into status.autoscaler.recommendedReplicas.
    pub recommended: i32,
    pub direction: Direction,
    pub measurement: Measurement,
    /// One line for the Event and the logs.
    pub reason: String,
    /// On scale-in: the pods to remove, least loaded first.
    pub victims: Vec<String>,
}

/// Decide one step. Pure: the caller records `plan.recommended` in `history`
/// afterwards (see [`History::record`]) and applies the plan.
pub fn decide(
    policy: &Policy,
    current_replicas: i32,
    pods: &[PodLoad],
    history: &History,
    now: Instant,
) -> Plan {
    let measurement = Measurement::of(pods);
    let bounded = |r: i32| r.clamp(policy.min_replicas, policy.max_replicas);
    let (raw, why) = raw_recommendation(policy, current_replicas, pods);
    let recommended = bounded(raw);

    // HPA stabilisation: move towards the recommendation only as far as every
    // recommendation of the relevant window allows.
    let up_floor = history
        .within(now, policy.scale_up_window)
        .fold(recommended, i32::min);
    let down_ceiling = history
        .within(now, policy.scale_down_window)
        .fold(recommended, i32::max);
    let stabilized = current_replicas.max(up_floor).min(down_ceiling);
    let stepped = stabilized.max(current_replicas.saturating_sub(policy.max_scale_in_step));
    // Bounds win over the step cap: a cluster above max goes to max at once.
    let replicas = bounded(stepped);

    let direction = match replicas.cmp(&current_replicas) {
        std::cmp::Ordering::Greater => Direction::Up,
        std::cmp::Ordering::Less => Direction::Down,
        std::cmp::Ordering::Equal => Direction::Hold,
    };
    let held_by = if replicas == current_replicas && recommended > current_replicas {
        format!(
            ", held by the {}s scale-up window",
            policy.scale_up_window.as_secs()
        )
    } else if stabilized > recommended && replicas > recommended {
        format!(
            ", held at {stabilized} by the {}s scale-down window",
            policy.scale_down_window.as_secs()
        )
    } else if stepped > stabilized {
        format!(
            ", limited to {} pod(s) per scale-in step",
            policy.max_scale_in_step
        )
    } else {
        String::new()
    };
    let verb = match direction {
        Direction::Up => format!("scale up {current_replicas} -> {replicas}"),
        Direction::Down => format!("scale down {current_replicas} -> {replicas}"),
        Direction::Hold => format!("hold {replicas}"),
    };
    let reason = format!(
        "{verb}: recommended {recommended} ({why}){held_by}; {} connections on {} measured pod(s), {} unmeasured, target {} per pod",
        measurement.total,
        measurement.pods_measured,
        measurement.pods_unmeasured,
        policy.target_connections_per_pod
    );
    let victims = match direction {
        Direction::Down => {
            let k = usize::try_from(current_replicas - replicas).unwrap_or(0);
            choose_victims(pods, k)
        }
        _ => Vec::new(),
    };
    Plan {
        replicas,
        recommended,
        direction,
        measurement,
        reason,
        victims,
    }
}

/// The HPA's replica calculation for a plain per-pod metric, before bounds and
/// windows. Returns the recommendation and a short note on how it was reached.
fn raw_recommendation(
    policy: &Policy,
    current_replicas: i32,
    pods: &[PodLoad],
) -> (i32, &'static str) {
    let target = policy.target_connections_per_pod as f64;
    let measured: Vec<f64> = pods
        .iter()
        .filter_map(|p| p.connections)
        .map(|c| c.max(0) as f64)
        .collect();
    let missing = pods.len() - measured.len();
    if measured.is_empty() {
        return (current_replicas, "no pod answered, nothing to go on");
    }
    let total: f64 = measured.iter().sum();
    let ratio = total / (target * measured.len() as f64);
    if missing == 0 {
        if (ratio - 1.0).abs() <= TOLERANCE {
            return (current_replicas, "load within tolerance of the target");
        }
        return (replicas_for(total, target), "connections / target");
    }
    // Missing pods: 0 connections on the way up, exactly at target on the way down.
    let scaling_up = ratio > 1.0;
    let assumed = if scaling_up {
        0.0
    } else {
        target * missing as f64
    };
    let new_ratio = (total + assumed) / (target * pods.len() as f64);
    if (new_ratio - 1.0).abs() <= TOLERANCE || (scaling_up != (new_ratio > 1.0)) {
        return (
            current_replicas,
            "unmeasured pods leave the load within tolerance",
        );
    }
    let proposed = replicas_for(total + assumed, target);
    if (scaling_up && proposed < current_replicas) || (!scaling_up && proposed > current_replicas) {
        return (
            current_replicas,
            "unmeasured pods would reverse the direction",
        );
    }
    (
        proposed,
        if scaling_up {
            "unmeasured pods counted as 0"
        } else {
            "unmeasured pods counted as at target"
        },
    )
}

fn replicas_for(connections: f64, target: f64) -> i32 {
    let r = (connections / target).ceil();
    if r >= i32::MAX as f64 {
        i32::MAX
    } else {
        r as i32
    }
}

#[cfg(test)]
mod tests;
