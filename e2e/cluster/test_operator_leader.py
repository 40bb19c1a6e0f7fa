"""Leader election on a real Lease: two `push-operator run` processes with the chart's
ServiceAccount; exactly one leads (ready, holds the Lease, reconciles). SIGKILL the leader
and the other takes over a Lease duration after it last saw the Lease change, by its own
clock (client-go's rule: its next read after the last renewal starts the clock, the first
read a duration later takes over: at most the duration plus two retry intervals). SIGTERM
the leader and it gives the Lease up: the other takes over at its next read."""

from __future__ import annotations

import time

import pytest
import yaml
from harness import Processes
from harness.cluster import CONTRACT, kubectl, kubectl_json, wait_for
from harness.host_operator import HostOperator, service_account_kubeconfig

LEASE = CONTRACT["operator"]["LEASE_NAME"]
RETRY_SECONDS = 2  # leader.rs RETRY_INTERVAL: how often a standby re-reads the Lease


@pytest.fixture
def pair(chart_release, tmp_path) -> tuple[HostOperator, HostOperator]:
    procs = Processes(tmp_path)
    kubeconfig = service_account_kubeconfig(tmp_path / "sa.kubeconfig", chart_release["namespace"],
                                            chart_release["service_account"])
    ops = tuple(HostOperator(procs, kubeconfig, name, chart_release["namespace"]).start()
                for name in ("leader-a", "leader-b"))
    try:
        yield ops
    finally:
        procs.kill_all()


def holder(namespace: str) -> str | None:
    proc = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    return yaml.safe_load(proc.stdout)["spec"].get("holderIdentity") if proc.returncode == 0 else None


def test_one_leads_and_the_other_takes_over_after_a_sigkill(pair, chart_release, run_id, tmp_path):
    ns = chart_release["namespace"]
    leader = wait_for("one operator to lead", lambda: next((op for op in pair if op.ready()), None),
                      timeout=60, interval=0.2)
    standby = next(op for op in pair if op is not leader)
    assert holder(ns) == leader.identity
    # Something to reconcile, so "only the leader acts" is observable.
    target = f"pc-e2e-{run_id}-leader"
    kubectl("create", "namespace", target)
    try:
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump({
            "apiVersion": "pushcluster.dev/v1alpha1", "kind": "PushCluster",
            "metadata": {"name": "led", "namespace": target}, "spec": {"replicas": 1}}))
        wait_for("the leader to reconcile", lambda: leader.reconcile_runs() > 0, timeout=60, interval=0.3)
        assert not standby.ready() and standby.reconcile_runs() == 0
        duration = kubectl_json("get", "lease", LEASE, "-n", ns)["spec"]["leaseDurationSeconds"]

        killed = time.monotonic()
        leader.kill()
        wait_for("the standby to take the Lease over", standby.ready, timeout=duration + 30, interval=0.1)
        takeover = time.monotonic() - killed
        assert holder(ns) == standby.identity
        wait_for("the new leader to reconcile", lambda: standby.reconcile_runs() > 0, timeout=60, interval=0.3)
        print(f"\nleader takeover after SIGKILL: {takeover:.1f} s (Lease duration {duration} s)")
        assert takeover <= duration + 2 * RETRY_SECONDS + 1, f"took {takeover:.1f} s for a {duration} s Lease"
    finally:
        kubectl("delete", "namespace", target, "--wait=false", check=False)


def test_a_leader_stopped_gracefully_hands_over_at_the_next_read(pair, chart_release):
    ns = chart_release["namespace"]
    leader = wait_for("one operator to lead", lambda: next((op for op in pair if op.ready()), None),
                      timeout=60, interval=0.2)
    standby = next(op for op in pair if op is not leader)
    stopped = time.monotonic()
    assert leader.stop() == 0
    wait_for("the standby to take the released Lease", standby.ready, timeout=30, interval=0.1)
    takeover = time.monotonic() - stopped
    assert holder(ns) == standby.identity
    print(f"\nleader takeover after SIGTERM (Lease released): {takeover:.1f} s")
    assert takeover <= RETRY_SECONDS + 2, f"took {takeover:.1f} s: the Lease was not released"

