"""Fixtures shared by the end-to-end suites; helpers in e2e/harness (see its docstring)."""

import pytest

from harness import Processes


@pytest.fixture
def processes(tmp_path):
    """Start processes with `processes.start(...)`; every one is killed at teardown."""
    procs = Processes(tmp_path)
    yield procs
    procs.kill_all()


@pytest.fixture
def redis_server(processes):
    """A real redis-server on a free port, started."""
    from harness import RedisServer

    return RedisServer(processes).start()


@pytest.fixture
def py_clients():
    """py_clients() -> a new PyClient; all are disconnected at teardown."""
    from harness import PyClient

    made = []

    def make():
        made.append(PyClient())
        return made[-1]

    yield make
    for client in made:
        client.close()
