//! One supervised push-server process: its slot, lifecycle phase and restart bookkeeping.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::child::{Child, ChildError};
use super::plan::{self, NodeSlot};
use super::ports;
use push_contract::local_mode::{PHASE_CRASHED, PHASE_DRAINING, PHASE_READY, PHASE_STARTING};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A node that ran this long before dying starts its backoff from scratch.
const STABLE_RUN: Duration = Duration::from_secs(10);
/// A node dying this soon after start, this many times in a row, gets new ports
/// (another process may have taken its ports between probing and binding).
const QUICK_CRASH: Duration = Duration::from_secs(2);
const QUICK_CRASHES_BEFORE_NEW_PORTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Starting { since: Instant },
    Ready,
    Draining { deadline: Instant },
    Crashed { restart_at: Instant },
}

pub struct Node {
    pub slot: NodeSlot,
    /// Creation order (newest first on scale-in).
    pub ordinal: u64,
    pub fingerprint: u64,
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
    pub phase: Phase,
    /// In nginx: from its first readiness until it is gone.
    pub routed: bool,
    pub restarts: u32,
    quick_crashes: u32,
    started: Instant,
}

impl Node {
    pub fn new(slot: NodeSlot, ordinal: u64, fingerprint: u64, env: Vec<(String, String)>) -> Self {
        let now = Instant::now();
        Self {
            slot,
            ordinal,
            fingerprint,
            env,
            child: None,
            phase: Phase::Starting { since: now },
            routed: false,
            restarts: 0,
            quick_crashes: 0,
            started: now,
        }
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Starting { .. } => PHASE_STARTING,
            Phase::Ready => PHASE_READY,
            Phase::Draining { .. } => PHASE_DRAINING,
            Phase::Crashed { .. } => PHASE_CRASHED,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(Child::pid).unwrap_or(0)
    }

    /// Starts `binary` with exactly the node's environment (plus the shell's PATH etc.).
    pub fn spawn(&mut self, binary: &Path, workdir: &Path) -> Result<(), ChildError> {
        let mut cmd = tokio::process::Command::new(binary);
        for (name, _) in std::env::vars() {
            // Only the manifest configures nodes; keep log and bundle settings of the shell.
            if name.starts_with("PUSH_")
                && name != push_contract::env::LOG
                && name != push_contract::env::CLIENT_JS
            {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = workdir.join(format!("{}.log", self.slot.name));
        self.child = Some(Child::spawn(&self.slot.name, cmd, &log)?);
        self.started = Instant::now();
        self.phase = Phase::Starting {
            since: self.started,
        };
        Ok(())
    }

    /// Records an unexpected exit and schedules the restart.
    pub fn crashed(&mut self, now: Instant) {
        let ran = self.started.elapsed();
        if ran >= STABLE_RUN {
            self.restarts = 0;
        }
        self.quick_crashes = if ran < QUICK_CRASH {
            self.quick_crashes + 1
        } else {
            0
        };
        let status = self.child.as_ref().and_then(Child::exit_status);
        let backoff = backoff(self.restarts);
        tracing::warn!(node = %self.slot.name, ?status, ?backoff, "push-server exited: restarting");
        self.phase = Phase::Crashed {
            restart_at: now + backoff,
        };
    }

    /// New ports for a node that keeps dying at start (nginx follows on the same tick).
    pub fn move_if_crash_looping(&mut self, reserved: &HashSet<u16>) {
        if self.quick_crashes < QUICK_CRASHES_BEFORE_NEW_PORTS {
            return;
        }
        match ports::consecutive_pair(reserved) {
            Ok((client, admin)) => {
                tracing::warn!(node = %self.slot.name, %client, %admin, "crashing at start: moving to new ports");
                self.slot.client = client;
                self.slot.admin = admin;
                plan::rebind(&mut self.env, &self.slot);
                self.quick_crashes = 0;
            }
            Err(e) => tracing::error!(error = %e, "no free ports to move a crashing node to"),
        }
    }
}

/// Exponential restart backoff: 0.5 s, 1 s, 2 s ... capped at 30 s.
pub fn backoff(restarts: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(restarts.min(16)))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let cases = [(0, 500), (1, 1000), (3, 4000), (6, 30_000), (40, 30_000)];
        for (restarts, ms) in cases {
            assert_eq!(
                backoff(restarts),
                Duration::from_millis(ms),
                "after {restarts} restarts"
            );
        }
    }
}
