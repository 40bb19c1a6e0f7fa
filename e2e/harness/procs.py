"""Processes in their own process group, all killed at teardown even on failure."""

import os
import signal
import subprocess
from pathlib import Path


class Processes:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self._n = 0

    def start(self, cmd, name: str, env: dict | None = None, stdin=None, stdout=None, cwd=None):
        """Starts `cmd`; stderr (and stdout unless given) go to <log_dir>/<name>.log."""
        self._n += 1
        log_path = self.log_dir / f"{self._n:02d}-{name}.log"
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            env={**os.environ, **(env or {})},
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            cwd=cwd,
            start_new_session=True,
            text=True,
        )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    @staticmethod
    def signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds; waits for the leader."""
        if proc.poll() is not None:
            return
        Processes.signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            Processes.signal(proc, signal.SIGKILL)
            proc.wait()

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.signal(proc, signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
