"""Loopback ports for servers that cannot listen on port 0 and report what they got
(redis-server, etcd, kube-apiserver, kubectl port-forward).

Why not "bind port 0, close, hand the number over": between the close and the server's
bind any process may take that port, because the kernel hands the same range out for
every outgoing connection and every bind(0) (that raced and failed CI once). Ports here
come from BELOW the kernel's ephemeral range, which no outgoing connection and no bind(0)
ever uses; among our own processes a port is claimed with an flock'ed file under
/tmp/pushcluster-ports, held until this process exits (the server has bound it by then).
Servers that can listen on port 0 (push-server: PUSH_ADDRESS_FILE) should do that instead.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
from pathlib import Path

LOCK_DIR = Path("/tmp/pushcluster-ports")
LOWEST = 20000
_claimed: dict[int, object] = {}


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def reserve_port(host: str = "127.0.0.1", count: int = 1) -> int:
    """A port nothing listens on, outside the ephemeral range, claimed for this process;
    with `count`, the first of that many consecutive ports, all claimed."""
    highest = _ephemeral_low() - count
    if highest <= LOWEST:
        raise RuntimeError(f"no port range below the ephemeral range (starts at {highest + 1})")
    LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    for _ in range(5000):
        port = rng.randrange(LOWEST, highest)
        ports = range(port, port + count)
        if any(p in _claimed for p in ports):
            continue
        locks = []
        for p in ports:
            lock = open(LOCK_DIR / str(p), "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                break
            locks.append(lock)
        if len(locks) == count and all(_bindable(p, host) for p in ports):
            _claimed.update(zip(ports, locks))
            return port
        for lock in locks:
            lock.close()
    raise RuntimeError(f"no free port found in {LOWEST}..{highest}")
