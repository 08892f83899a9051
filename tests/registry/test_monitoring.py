"""Live evidence in the registry, on SQLite and PostgreSQL: monitoring settings, the shadow
targets servers poll, reports that add up and stay bounded, the policy's shadow rule at
approval, and the drift retrain claim that lets one check through per cooldown."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from registry import (
    DriftPoint,
    InvalidRecord,
    MonitoringReport,
    MonitoringSettings,
    NotFoundError,
    Policy,
    RuleViolation,
    ShadowRule,
    ShadowSample,
    ShadowTally,
)
from registry.policy import wilson_interval
from registry.resources.monitoring import MAX_DISAGREEMENTS
from registry.tallies import MAX_VALUES, OTHER_VALUE

from .conftest import BACKBONE, make_artifact, metrics

LOOSE = Policy("accuracy", min_improvement=-1.0, max_class_regression=1.0)
SHADOWED = replace(LOOSE, shadow=ShadowRule(min_requests=10, min_agreement=0.8))
JPEG = b"\xff\xd8\xff\xe0" + b"0" * 100


def version(reg, tmp_path, tag: str, domain: str = "retail") -> int:
    reg.record_data_version(domain, "d" * 32, rows=4, row_counts={}, validation_passed=True)
    return reg.register_version(
        domain,
        make_artifact(tmp_path / f"{domain}-{tag}", tag),
        method="mpt",
        config={"tag": tag},
        data_version="d" * 32,
        backbone=BACKBONE,
        metrics={"test": metrics(0.8, a=0.8)},
        created_by="trainer",
    ).number


@pytest.fixture
def scene(reg, tmp_path):
    """retail: v1 production, v2 a candidate with a pending request checked by SHADOWED."""
    version(reg, tmp_path, "one")
    first = reg.request_promotion("retail", 1, requested_by="ana", policy=LOOSE)
    reg.approve(first.id, reviewer="ben")
    version(reg, tmp_path, "two")
    request = reg.request_promotion("retail", 2, requested_by="ana", policy=SHADOWED)
    return request


def tally(requests: int, agreed: int, **more) -> ShadowTally:
    return ShadowTally("retail", 2, 1, requests=requests, agreed=agreed, **more)


def sample(n: int, **more) -> ShadowSample:
    return ShadowSample(
        "retail",
        2,
        1,
        datetime.now(UTC),
        f"{n:064x}",
        {},
        "shirt",
        0.9,
        "coat",
        0.6,
        **more,
    )


def test_settings_are_stored_once_and_audited_when_they_change(reg):
    settings = MonitoringSettings(shadow_fraction=0.1, drift_threshold=0.2, window=500)
    assert reg.set_monitoring("retail", settings, actor="flow") is True
    assert reg.set_monitoring("retail", settings, actor="flow") is False
    assert reg.monitoring("retail") == settings
    assert reg.set_monitoring("retail", replace(settings, window=800), actor="ana") is True
    entries = [e for e in reg.audit_log(domain="retail") if e.action == "monitoring_set"]
    assert [e.actor for e in entries] == ["ana", "flow"]
    assert entries[0].detail["window"] == 800


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"shadow_fraction": 1.5}, "shadow_fraction 1.5 must be in [0, 1]"),
        ({"shadow_alias": "production"}, "compare production with itself"),
        ({"window": 10}, "window 10 must be in"),
        ({"drift_threshold": -0.1}, "drift_threshold -0.1 must be a positive number"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(reg, bad, named):
    with pytest.raises(InvalidRecord, match=named.replace("[", r"\[").replace("]", r"\]")):
        reg.set_monitoring("retail", MonitoringSettings(**bad), actor="flow")


def test_targets_follow_the_open_request_or_the_named_alias(reg, scene, tmp_path):
    reg.set_monitoring("retail", MonitoringSettings(shadow_fraction=0.2), actor="flow")
    [target] = reg.monitor_targets().values()
    assert (target.shadow, target.shadow_source) == (2, f"request #{scene.id}")

    version(reg, tmp_path, "three")
    reg.set_alias("retail", "staging", 3, actor="ana")
    reg.set_monitoring(
        "retail", MonitoringSettings(shadow_fraction=0.2, shadow_alias="staging"), actor="flow"
    )
    assert reg.monitor_targets()["retail"].shadow == 3
    reg.set_alias("retail", "staging", 1, actor="ana")  # production's own version: no shadow
    assert reg.monitor_targets()["retail"].shadow is None

    reg.set_monitoring("retail", MonitoringSettings(shadow_fraction=0.0), actor="flow")
    assert reg.monitor_targets()["retail"].shadow is None  # off


def test_reports_add_up_across_servers_and_stay_bounded(reg, scene):
    values = {f"v{i}": 1 for i in range(MAX_VALUES)}
    first = tally(10, 7, errors=1, shadow_values=values, latency_ms=(1,) + (0,) * 12)
    second = tally(5, 5, dropped=2, shadow_values={"new": 3}, latency_ms=(0, 2) + (0,) * 11)
    reg.record_monitoring(MonitoringReport([first], [sample(i) for i in range(30)]))
    reg.record_monitoring(MonitoringReport([second], [sample(i) for i in range(30, 60)]))

    found = reg.shadow_evidence("retail", 2, 1)
    assert (found.requests, found.tally.agreed) == (15, 12)
    assert (found.tally.errors, found.tally.dropped) == (1, 2)
    assert found.agreement == 12 / 15
    assert found.tally.latency_ms[:2] == (1, 2)
    assert len(found.tally.shadow_values) == MAX_VALUES  # capped, the rest folded
    assert found.tally.shadow_values["new"] == 3 and OTHER_VALUE in found.tally.shadow_values
    assert sum(found.tally.shadow_values.values()) == MAX_VALUES + 3
    assert len(found.samples) == MAX_DISAGREEMENTS
    assert found.samples[0].image_sha256 == f"{59:064x}"  # newest first
    assert reg.shadow_evidence("retail", 2, 3) is None


def test_concurrent_reports_lose_no_count(reg, scene):
    reg.record_monitoring(MonitoringReport([tally(1, 1)]))  # the row exists
    errors = []

    def report():
        for _ in range(10):
            try:
                reg.record_monitoring(MonitoringReport([tally(1, 0)]))
            except Exception as exc:  # SQLite: a writer may find the file locked
                errors.append(exc)

    threads = [threading.Thread(target=report) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = reg.shadow_evidence("retail", 2, 1)
    assert found.requests == 1 + 30 - len(errors)  # every report taken counted exactly once


@pytest.mark.parametrize(
    "bad, named",
    [
        (tally(2, 3), "agreed <= requests"),
        (tally(2, 1, latency_ms=(1, 2)), "latency_ms: expected 13"),
        (tally(2, 1, shadow_confidence=(-1,) * 10), "shadow_confidence"),
    ],
)
def test_a_bad_tally_is_refused_and_nothing_is_stored(reg, scene, bad, named):
    with pytest.raises(InvalidRecord, match=named):
        reg.record_monitoring(MonitoringReport([tally(1, 1), bad]))
    assert reg.shadow_evidence("retail", 2, 1) is None


def test_a_report_on_an_unknown_version_is_refused(reg, scene):
    with pytest.raises(NotFoundError, match="retail v9"):
        reg.record_monitoring(MonitoringReport([replace(tally(1, 1), version=9)]))


def test_samples_keep_images_only_as_jpeg_thumbnails(reg, scene):
    reg.record_monitoring(MonitoringReport(samples=[sample(1, thumbnail=JPEG)]))
    assert reg.shadow_evidence("retail", 2, 1) is None  # no tally: nothing answered yet
    reg.record_monitoring(MonitoringReport([tally(1, 0)]))
    assert reg.shadow_evidence("retail", 2, 1).samples[0].thumbnail == JPEG
    with pytest.raises(InvalidRecord, match="JPEG"):
        reg.record_monitoring(MonitoringReport(samples=[sample(2, thumbnail=b"GIF89a")]))


def test_drift_history_is_kept_per_domain_newest_last(reg, scene):
    at = datetime.now(UTC)
    points = [
        DriftPoint("retail", 1, at + timedelta(minutes=i), i / 10, {"predictions": i / 10}, 100)
        for i in range(5)
    ]
    reg.record_monitoring(MonitoringReport(drift=points[:3]))
    reg.record_monitoring(MonitoringReport(drift=points[3:]))
    history = reg.drift_history("retail")
    assert [p.drift for p in history] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert reg.latest_drift()["retail"].drift == 0.4
    assert [p.drift for p in reg.drift_history("retail", limit=2)] == [0.3, 0.4]


def test_the_shadow_rule_refuses_an_approval_with_too_few_shadow_requests(reg, scene):
    reg.record_monitoring(MonitoringReport([tally(3, 3)]))
    with pytest.raises(RuleViolation, match=r"answered 3 shadow request\(s\).*at least 10"):
        reg.approve(scene.id, reviewer="ben")
    refused = reg.audit_log(domain="retail")[0]
    assert (refused.action, refused.outcome) == ("approve", "refused")
    assert reg.resolve("retail") == 1

    reg.record_monitoring(MonitoringReport([tally(20, 12)]))  # 15 of 23: 65 %
    with pytest.raises(RuleViolation, match=r"agrees with production on 65\.2% of 23"):
        reg.approve(scene.id, reviewer="ben")


def test_an_override_records_the_live_evidence_it_was_taken_on(reg, scene):
    reg.record_monitoring(MonitoringReport([tally(4, 4)]))
    decided = reg.approve(scene.id, reviewer="ben", override_reason="the launch cannot wait")
    assert decided.shadow_passed is False
    shadow = decided.policy_report["shadow"]
    assert (shadow["requests"], shadow["agreed"], shadow["passed"]) == (4, 4, False)
    assert reg.history("retail")[-1].kind == "override"
    entry = reg.audit_log(domain="retail")[0]
    assert entry.detail["shadow_requests"] == 4 and entry.detail["kind"] == "override"


def test_enough_agreeing_shadow_requests_pass_the_rule(reg, scene):
    reg.record_monitoring(MonitoringReport([tally(12, 11)]))
    decided = reg.approve(scene.id, reviewer="ben")
    assert decided.shadow_passed is True
    assert reg.history("retail")[-1].kind == "promotion"
    assert decided.policy_report["shadow"]["interval"][0] < 11 / 12 < 1.0


def test_wilson_interval_is_inside_zero_one_and_narrows_with_n():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    wide, narrow = wilson_interval(8, 10), wilson_interval(800, 1000)
    assert wide[1] - wide[0] > 5 * (narrow[1] - narrow[0])


def test_one_drift_retrain_per_cooldown_even_for_simultaneous_checks(reg, scene):
    reg.set_monitoring("retail", MonitoringSettings(drift_threshold=0.2), actor="flow")
    now = datetime.now(UTC)
    results = []

    def claim():
        results.append(
            reg.claim_drift_retrain(
                "retail",
                cooldown=timedelta(hours=1),
                actor="drift-check",
                detail={"drift": 0.5},
                now=now,
            )[0]
        )

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    later = now + timedelta(minutes=59)
    claimed, previous = reg.claim_drift_retrain(
        "retail", cooldown=timedelta(hours=1), actor="drift-check", detail={}, now=later
    )
    assert not claimed and previous == now
    after = now + timedelta(hours=1, seconds=1)
    assert reg.claim_drift_retrain(
        "retail", cooldown=timedelta(hours=1), actor="drift-check", detail={}, now=after
    )[0]
    reg.release_drift_retrain(
        "retail", claimed_at=after, previous=now, actor="drift-check", error="no deployment"
    )
    assert reg.claim_drift_retrain(
        "retail", cooldown=timedelta(hours=1), actor="drift-check", detail={}, now=after
    )[0]
    actions = [(e.action, e.outcome) for e in reg.audit_log(domain="retail")][:3]
    assert actions == [
        ("drift_retrain", "ok"),
        ("drift_retrain", "refused"),
        ("drift_retrain", "ok"),
    ]


def test_a_claim_needs_the_domains_settings(reg, scene):
    with pytest.raises(NotFoundError, match="mpt run retail"):
        reg.claim_drift_retrain("retail", cooldown=timedelta(hours=1), actor="x", detail={})
