"""The chart's PrometheusRule judged by the real rule engine (promtool, built from Go
modules by e2e/prometheus/build): the rendered rules load, every alert fires on the
series of its failure with its labels and rendered annotations (alerts-test.yaml),
none fires on a healthy cluster, and every runbook_url names a runbook in docs/runbooks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO, missing_build, validate_custom_resources
from harness.chart import VALUE_COMBINATIONS, render

PROMTOOL = REPO / ".tools" / "bin" / "promtool"
RUNBOOKS = REPO / "docs" / "runbooks"


@pytest.fixture
def promtool() -> Path:
    if not PROMTOOL.exists():
        missing_build("promtool not built: run .ci/setup (e2e/prometheus/build)")
    return PROMTOOL


def rendered_rules(helm, tmp_path: Path, values: dict) -> dict:
    objects = render(helm, {"prometheusRule": {"enabled": True, **values}}, tmp_path)
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    return rule


def run(promtool: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def promtool_test_rules(promtool: Path, tmp_path: Path, rules: str, runbook_base: str) -> tuple[subprocess.CompletedProcess, str]:
    """`promtool test rules` of alerts-test.yaml (its RUNBOOK_BASE made `runbook_base`)
    against `rules`; the test file's text too."""
    (tmp_path / "rules.yaml").write_text(rules)
    tests = Path(__file__).with_name("alerts-test.yaml").read_text().replace("RUNBOOK_BASE", runbook_base)
    (tmp_path / "alerts-test.yaml").write_text(tests)
    return run(promtool, "test", "rules", "alerts-test.yaml", cwd=tmp_path), tests


def test_every_alert_fires_on_its_failure_and_none_on_a_healthy_cluster(helm, tmp_path, promtool):
    base = "https://runbooks.example/pushcluster"
    rule = rendered_rules(helm, tmp_path, {"runbookBaseUrl": base + "/", "labels": {"release": "prom"}})
    assert rule["metadata"]["labels"]["release"] == "prom"
    tested, tests = promtool_test_rules(promtool, tmp_path, yaml.safe_dump(rule["spec"]), base)
    checked = run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert of the chart has a test that makes it fire.
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    fired = {t["alertname"] for g in yaml.safe_load(tests)["tests"] for t in g.get("alert_rule_test", [])
             if t.get("exp_alerts")}
    assert alerts == fired, f"alerts without a firing test: {alerts - fired}"


def test_a_broken_rule_or_a_wrong_expectation_fails(helm, tmp_path, promtool):
    """The two checks above can fail: a threshold changed is caught by the tests."""
    rule = rendered_rules(helm, tmp_path, {})
    text = yaml.safe_dump(rule["spec"]).replace("(push_fanout_lag_seconds) > 5", "(push_fanout_lag_seconds) > 50")
    assert "> 50" in text
    base = rule["spec"]["groups"][0]["rules"][0]["annotations"]["runbook_url"].rsplit("/", 1)[0]
    tested, _ = promtool_test_rules(promtool, tmp_path, text, base)
    assert tested.returncode != 0 and "PushClusterFanoutLag" in tested.stdout + tested.stderr


def test_every_runbook_url_names_a_runbook_in_the_repository(helm, tmp_path):
    rule = rendered_rules(helm, tmp_path, {})
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            url = r["annotations"]["runbook_url"]
            assert url.startswith("https://github.com/pushcluster/pushcluster/blob/main/docs/runbooks/"), url
            runbook = RUNBOOKS / url.rsplit("/", 1)[1]
            assert runbook.is_file(), f"{r['alert']}: {runbook} missing"
            text = runbook.read_text()
            for section in ("## Meaning", "## Confirm", "## Act"):
                assert section in text, f"{runbook.name} has no {section!r}"
            assert re.search(rf"\b{r['alert']}\b", text), f"{runbook.name} does not name {r['alert']}"


def test_no_prometheusrule_by_default(helm, tmp_path):
    assert not [o for o in render(helm, {}, tmp_path) if o["kind"] == "PrometheusRule"]


def test_the_prometheusrule_matches_its_crd_schema(helm, tmp_path):
    objects = render(helm, VALUE_COMBINATIONS["prometheus-rule"], tmp_path)
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    proc = validate_custom_resources(rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PrometheusRule/pc-pushcluster-operator ok" in proc.stdout

