"""Fixtures of the push-server suite: a cluster of push-server processes on one Redis."""

import pytest

from harness import PushServer
from harness.push_suite import API_TOKEN


@pytest.fixture
def start_node(processes):
    """start_node(redis_url=None, node_id="a", **env) -> a started PushServer."""

    def start(redis_url=None, node_id="a", ready=True, **env):
        env.setdefault("API_TOKEN", API_TOKEN)
        return PushServer(processes, redis_url=redis_url, env=env, node_id=node_id).start(ready=ready)

    return start


@pytest.fixture
def cluster(redis_server, start_node):
    """Two nodes linked by one real Redis."""
    return [start_node(redis_server.url, node_id=n) for n in ("a", "b")]
