"""pytest fixtures of e2e/chart; the helpers live in harness/chart.py."""

import pytest

from harness import contract as load_contract
from harness.chart import find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    return find_helm()


@pytest.fixture(scope="session")
def contract() -> dict:
    return load_contract()
