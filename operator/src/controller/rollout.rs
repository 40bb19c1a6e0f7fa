//! One cluster at a time when the operator itself changes the push pods' template (an
//! upgrade that brings a new default image or new generated settings): every cluster
//! rolling in the same minute is a fleet-wide reconnect storm (CloudNativePG spreads
//! them the same way, `CLUSTERS_ROLLOUT_DELAY`). A change the user made to a cluster's
//! spec is theirs to time and is not queued.
//!
//! The gate is the leader's memory: a new leader starts with it open (the operator pods
//! of an upgrade roll before the clusters do, so the new leader is the one that starts
//! them); a holder not seen finishing within [`MAX_HOLD`] is let go.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A holder that has not finished by then (deleted, paused, stuck) stops blocking the rest.
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);
/// How often a queued cluster asks again while another one rolls.
pub const QUEUE_POLL: Duration = Duration::from_secs(2);

/// Whether a cluster's operator-caused rollout may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Queued: why (for the Progressing condition), and when to ask again.
    Wait {
        reason: String,
        retry: Duration,
    },
}

#[derive(Debug, Default)]
struct Held {
    /// `namespace/name` of the cluster rolling now, since when.
    holder: Option<(String, Instant)>,
    /// When the last holder finished.
    released: Option<Instant>,
}

#[derive(Debug)]
pub struct RolloutGate {
    delay: Duration,
    held: Mutex<Held>,
}

impl RolloutGate {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            held: Mutex::default(),
        }
    }

    /// `cluster` wants to roll its pods to a template the operator changed.
    pub fn admit(&self, cluster: &str, now: Instant) -> Admission {
        let Ok(mut held) = self.held.lock() else {
            return Admission::Go;
        };
        if let Some((holder, since)) = &held.holder {
            if holder == cluster {
                return Admission::Go;
            }
            if now.saturating_duration_since(*since) < MAX_HOLD {
                return Admission::Wait {
                    reason: format!("cluster {holder} is rolling out"),
                    retry: QUEUE_POLL,
                };
            }
            tracing::warn!(%holder, "a cluster's rollout held the gate past its limit: let go");
            held.holder = None;
            held.released = Some(now);
        }
        if let Some(released) = held.released {
            let due = released + self.delay;
            if now < due {
                let left = due - now;
                return Admission::Wait {
                    reason: format!(
                        "{}s between clusters' rollouts, {}s left",
                        self.delay.as_secs(),
                        left.as_secs_f64().ceil()
                    ),
                    retry: left.min(QUEUE_POLL),
                };
            }
        }
        held.holder = Some((cluster.to_string(), now));
        Admission::Go
    }

    /// What a reconcile saw of `cluster`'s pods: a holder whose rollout is complete
    /// opens the gate (after the delay) for the next.
    pub fn observe(&self, cluster: &str, rolling: bool, now: Instant) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        if !rolling && held.holder.as_ref().is_some_and(|(h, _)| h == cluster) {
            held.holder = None;
            held.released = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(a: &Admission) -> bool {
        matches!(a, Admission::Wait { .. })
    }

    #[test]
    fn one_cluster_rolls_at_a_time_with_the_delay_between() {
        let gate = RolloutGate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(gate.admit("ns/a", t0), Admission::Go);
        // a holds it: b waits, a asking again keeps it.
        let b = gate.admit("ns/b", t0 + Duration::from_secs(1));
        assert!(waits(&b), "{b:?}");
        assert!(format!("{b:?}").contains("ns/a is rolling out"), "{b:?}");
        assert_eq!(
            gate.admit("ns/a", t0 + Duration::from_secs(2)),
            Admission::Go
        );
        // Still rolling: nothing changes; done: the delay starts.
        gate.observe("ns/a", true, t0 + Duration::from_secs(3));
        assert!(waits(&gate.admit("ns/b", t0 + Duration::from_secs(4))));
        gate.observe("ns/b", false, t0 + Duration::from_secs(4)); // not the holder: no effect
        assert!(waits(&gate.admit("ns/c", t0 + Duration::from_secs(5))));
        gate.observe("ns/a", false, t0 + Duration::from_secs(20));
        match gate.admit("ns/b", t0 + Duration::from_secs(26)) {
            Admission::Wait { reason, retry } => {
                assert!(reason.contains("4s left"), "{reason}");
                assert_eq!(retry, QUEUE_POLL);
            }
            other => panic!("{other:?}"),
        }
        match gate.admit("ns/b", t0 + Duration::from_millis(29_500)) {
            Admission::Wait { retry, .. } => assert_eq!(retry, Duration::from_millis(500)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            gate.admit("ns/b", t0 + Duration::from_secs(30)),
            Admission::Go
        );
        assert!(waits(&gate.admit("ns/c", t0 + Duration::from_secs(31))));
    }

    #[test]
    fn a_holder_never_seen_finishing_is_let_go_after_max_hold() {
        let gate = RolloutGate::new(Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(gate.admit("ns/gone", t0), Admission::Go);
        assert!(waits(
            &gate.admit("ns/b", t0 + MAX_HOLD - Duration::from_secs(1))
        ));
        assert_eq!(gate.admit("ns/b", t0 + MAX_HOLD), Admission::Go);
    }

    #[test]
    fn without_a_delay_the_next_goes_once_the_holder_is_done() {
        let gate = RolloutGate::new(Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(gate.admit("ns/a", t0), Admission::Go);
        gate.observe("ns/a", false, t0);
        assert_eq!(gate.admit("ns/b", t0), Admission::Go);
    }
}
