"""The drift check against a real registry (SQLite and PostgreSQL): a domain whose
production drifted above its threshold gets one retrain started (not two, even with two
checks at once), then none until its cooldown has passed; what started it is audited and
handed to the retrain as its trigger; a retrain that cannot be started gives the claim back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from flows.drift_check import check_drift, deployed_retrains, drifted
from registry import DriftPoint, MonitoringReport, MonitoringSettings, PromptRegistry, upgrade
from registry.store import LocalStore

from ..registry.conftest import db_url  # noqa: F401  (sqlite + postgresql parameters)
from ..registry.test_monitoring import LOOSE, version

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def reg(db_url, tmp_path) -> PromptRegistry:  # noqa: F811
    """retail: v1 in production, drift threshold 0.25, cooldown 6 h; v2 registered."""
    upgrade(db_url)
    reg = PromptRegistry(db_url, LocalStore(tmp_path / "artifacts"))
    version(reg, tmp_path, "one")
    reg.approve(
        reg.request_promotion("retail", 1, requested_by="ana", policy=LOOSE).id, reviewer="ben"
    )
    version(reg, tmp_path, "two")
    settings = MonitoringSettings(drift_threshold=0.25, cooldown_hours=6)
    reg.set_monitoring("retail", settings, actor="retrain-flow")
    return reg


def measured(reg: PromptRegistry, drift: float, version: int = 1) -> None:
    point = DriftPoint("retail", version, NOW, drift, {"predictions": drift}, 1000)
    reg.record_monitoring(MonitoringReport(drift=[point]))


class Starts:
    """Stands in for the retrain deployment: records what it was asked to start."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, domain: str, trigger: dict) -> str:
        with self.lock:
            self.calls.append((domain, trigger))
        if self.fail:
            raise RuntimeError("no deployment retrain/retrain-retail on the server")
        return f"run-{len(self.calls)}"


def drift_audit(reg: PromptRegistry) -> list[tuple[str, str]]:
    return [
        (a.action, a.outcome) for a in reg.audit_log(domain="retail") if a.action == "drift_retrain"
    ][::-1]


def test_one_retrain_per_cooldown_with_its_trigger(reg):
    start = Starts()
    measured(reg, 0.1)
    assert check_drift(reg, start, NOW) == [] and not start.calls  # under the threshold
    measured(reg, 0.41)
    [row] = check_drift(reg, start, NOW)
    assert row["status"] == "started" and row["run"] == "run-1"
    [(domain, trigger)] = start.calls
    assert domain == "retail" and trigger["kind"] == "drift" and trigger["drift"] == 0.41
    assert trigger["threshold"] == 0.25 and trigger["production_version"] == 1
    assert trigger["claimed_at"] == NOW.isoformat()

    [again] = check_drift(reg, start, NOW + timedelta(hours=5))
    assert again["status"] == "cooling down" and len(start.calls) == 1
    [later] = check_drift(reg, start, NOW + timedelta(hours=6, minutes=1))
    assert later["status"] == "started" and len(start.calls) == 2
    assert drift_audit(reg) == [("drift_retrain", "ok")] * 2


def test_two_checks_at_once_start_one_retrain(reg):
    measured(reg, 0.5)
    start, rows = Starts(), []
    barrier = threading.Barrier(2)

    def check():
        barrier.wait()
        rows.extend(check_drift(reg, start, NOW))

    threads = [threading.Thread(target=check) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["status"] for r in rows) == ["cooling down", "started"]
    assert len(start.calls) == 1


def test_a_retrain_that_cannot_start_gives_the_claim_back(reg):
    measured(reg, 0.5)
    [row] = check_drift(reg, Starts(fail=True), NOW)
    assert row["status"] == "not started" and "no deployment" in row["error"]
    [row] = check_drift(reg, Starts(), NOW + timedelta(minutes=5))
    assert row["status"] == "started"  # not held back by the cooldown of a run that never was
    assert drift_audit(reg) == [
        ("drift_retrain", "ok"),
        ("drift_retrain", "refused"),
        ("drift_retrain", "ok"),
    ]


def test_only_the_served_versions_drift_and_a_threshold_count(reg):
    measured(reg, 0.9, version=2)  # v2 is not production: its drift starts nothing
    assert drifted(reg) == []
    measured(reg, 0.9)
    assert [d.domain for d in drifted(reg)] == ["retail"]
    reg.set_monitoring("retail", MonitoringSettings(), actor="retrain-flow")  # no threshold
    assert drifted(reg) == []


def test_a_domain_without_an_applied_retrain_deployment_is_not_started(reg):
    measured(reg, 0.5)
    start = deployed_retrains({"medical": "retrain/retrain-medical"})
    [row] = check_drift(reg, start, NOW)
    assert row["status"] == "not started"
    assert (
        "no retrain deployment of 'retail'" in row["error"] and "mpt schedule apply" in row["error"]
    )
