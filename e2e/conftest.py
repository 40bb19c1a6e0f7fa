"""Fixtures shared by the end-to-end suites (helpers in e2e/harness, see its docstring), and
each test's tier marker."""

from pathlib import Path

import pytest

from harness import Processes

E2E = Path(__file__).resolve().parent
# The testing tiers (ARCHITECTURE.md) as the markers pytest.ini registers: a folder's tier,
# or a file's where one folder holds two. `pytest -m local` runs tier 4 alone.
TIERS = {
    "harness": "unit",
    "structure": "unit",
    "manifests": "manifests",
    "chart": "manifests",
    "autoscale/test_examples.py": "manifests",
    "autoscale/test_local_autoscale.py": "local",
    "local": "local",
    "continuity": "local",
    "redis_ha": "local",
    "push_server": "local",
    "engineio": "local",
    "hostile": "local",
    "bench": "local",
    "cluster": "cluster",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if not item.path.is_relative_to(E2E):
            continue
        rel = item.path.relative_to(E2E)
        tier = TIERS.get(rel.as_posix()) or TIERS.get(rel.parts[0])
        if tier:
            item.add_marker(tier)


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
