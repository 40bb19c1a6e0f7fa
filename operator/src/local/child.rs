//! A supervised child process in its own process group, so a signal reaches everything
//! it spawned (nginx workers) and dropping it, even while unwinding, leaves nothing behind.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
}

pub struct Child {
    name: String,
    pid: i32,
    inner: tokio::process::Child,
    exited: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd` as the leader of a new process group, output appended to `log`.
    pub fn spawn(
        name: &str,
        mut cmd: tokio::process::Command,
        log: &Path,
    ) -> Result<Self, ChildError> {
        let what = format!("{name} ({:?})", cmd.as_std().get_program());
        let spawn_err = |source| ChildError::Spawn {
            what: what.clone(),
            source,
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child
        // when this (spawning) thread dies, so a SIGKILLed supervisor leaves no node behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let inner = cmd.spawn().map_err(spawn_err)?;
        let pid = inner
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(0);
        Ok(Self {
            name: name.to_owned(),
            pid,
            inner,
            exited: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Non-blocking: false once the process has exited (and been reaped).
    pub fn alive(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.inner.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exited
    }

    /// Sends `sig` to the whole process group.
    pub fn signal(&mut self, sig: i32) {
        if self.pid > 0 && self.alive() {
            // SAFETY: killpg only sends a signal; the group is ours (process_group(0)).
            unsafe {
                libc::killpg(self.pid, sig);
            }
        }
    }

    /// Sends `sig`, waits up to `grace`, then SIGKILLs the group.
    pub async fn stop(mut self, sig: i32, grace: Duration) {
        self.signal(sig);
        if tokio::time::timeout(grace, self.inner.wait())
            .await
            .is_err()
        {
            tracing::warn!(name = %self.name, "did not stop in time: killing");
        }
        self.kill_group();
        let _ = self.inner.wait().await;
        // Nothing left to kill: Drop must not signal a pid that may be reused.
        self.pid = 0;
    }

    fn kill_group(&mut self) {
        if self.pid > 0 {
            // SAFETY: as above; also reaches children left by an exited leader.
            unsafe {
                libc::killpg(self.pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_group();
    }
}
