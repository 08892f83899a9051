"""Every action that changes the registry writes an audit record, registration included.

The actions are enumerated from `PromptRegistry` itself: every public method is called on
a registry holding a small scene (a data version, two versions, production at v1, a
pending request for v2, a user and a session), the whole database and the artifact store
are compared before and after, and a call that changed anything must have appended an
audit record naming that action. A new public method fails the test until it is listed
here with a call, so nothing that writes can be added unaudited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from registry import MonitoringSettings, Policy, PromptRegistry, ReviewEvidence
from registry import models as m
from registry.db import get_engine, session_scope

from .conftest import BACKBONE, make_artifact, metrics
from .test_registry import data

POLICY = Policy("accuracy")
D = "d" * 32


class Scene:
    """What the calls below act on; `tmp` is a folder for artifacts and downloads."""

    def __init__(self, reg: PromptRegistry, tmp) -> None:
        self.reg, self.tmp = reg, tmp
        reg.add_user("ana", "requester")
        self.token = reg.add_user("ben", "reviewer")[1]
        reg.add_user("root", "admin")
        data(reg)
        for tag in ("one", "two"):
            self.register(tag)
        first = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
        reg.approve(first.id, reviewer="ben")
        self.pending = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY).id
        self.session = reg.create_session("ben", ttl=timedelta(hours=1))
        reg.store.put_dir(make_artifact(tmp / "orphan", "orphan"))  # what gc removes

    def register(self, tag: str):
        return self.reg.register_version(
            "retail",
            make_artifact(self.tmp / f"art-{tag}", tag),
            method="mpt",
            config={"tag": tag},
            data_version=D,
            backbone=BACKBONE,
            metrics={"test": metrics(0.8, a=0.8, b=0.8)},
            created_by="ana",
        )

    def candidate(self):
        return self.reg.register_candidate(
            "retail",
            {"prompts.safetensors": b"t3", "prompt_config.json": b"{}"},
            method="mpt",
            config={"tag": "three"},
            data_version=D,
            backbone=BACKBONE,
            metrics={"test": metrics(0.9, a=0.9, b=0.9)},
            policy=POLICY,
            production=(1, metrics(0.8, a=0.8, b=0.8)),
            created_by="ben",
            flow_run_id="run-3",
            evidence=ReviewEvidence(
                "test", "label", [{"image": "a.png", "target": "a", "prediction": "a"}]
            ),
        )


Call = Callable[[Scene], Any]
ROWS = [{"image": "a.png", "target": "a", "prediction": "b", "score": 0.5}]

ACTIONS: dict[str, tuple[str, Call]] = {
    "record_data_version": ("data_version", lambda sc: data(sc.reg, md5="e" * 32)),
    "register_version": ("register", lambda sc: sc.register("three")),
    "register_candidate": ("register", Scene.candidate),
    "record_evaluation": (
        "evaluate",
        lambda sc: sc.reg.record_evaluation("retail", 2, D, "val", metrics(0.5), actor="ben"),
    ),
    "set_alias": ("set_alias", lambda sc: sc.reg.set_alias("retail", "staging", 2, actor="ana")),
    "rollback": ("rollback", lambda sc: _rollback(sc)),
    "protect_alias": (
        "alias_protect",
        lambda sc: sc.reg.protect_alias("retail", "staging", actor="root"),
    ),
    "request_promotion": ("request", lambda sc: _request_again(sc)),
    "approve": ("approve", lambda sc: sc.reg.approve(sc.pending, reviewer="ben")),
    "reject": ("reject", lambda sc: sc.reg.reject(sc.pending, reviewer="ben", comment="no")),
    "record_predictions": (
        "predictions",
        lambda sc: sc.reg.record_predictions("retail", 2, D, "test", ROWS, target_field="label"),
    ),
    "record_thumbnails": (
        "thumbnails",
        lambda sc: sc.reg.record_thumbnails("retail", D, "test", {"a.png": b"\xff\xd8\xff\xe0"}),
    ),
    "add_user": ("user_add", lambda sc: sc.reg.add_user("cy", "viewer", actor="root")),
    "ensure_service_account": (
        "service_account",
        lambda sc: sc.reg.ensure_service_account("retrain-flow"),
    ),
    "revoke_user": ("user_revoke", lambda sc: sc.reg.revoke_user("ana", actor="root")),
    "rotate_token": ("user_rotate", lambda sc: sc.reg.rotate_token("ben", actor="root")),
    "create_session": ("login", lambda sc: sc.reg.create_session("ben", ttl=timedelta(hours=1))),
    "end_session": ("logout", lambda sc: sc.reg.end_session(sc.session)),
    "record_audit": ("login", lambda sc: sc.reg.record_audit("login", "x", outcome="refused")),
    "gc": ("gc", lambda sc: sc.reg.gc()),
    "set_monitoring": (
        "monitoring_set",
        lambda sc: sc.reg.set_monitoring("retail", MonitoringSettings(0.1), actor="ana"),
    ),
    "claim_drift_retrain": ("drift_retrain", lambda sc: _claim(sc)),
    "release_drift_retrain": ("drift_retrain", lambda sc: _release(sc)),
}
"""Method -> (the audit action it must record when it changes something, a call).
`record_audit` appends to the audit log itself, which is all it changes."""

READS: dict[str, Call] = {
    "data_version": lambda sc: sc.reg.data_version("retail", D),
    "find_version": lambda sc: sc.reg.find_version(
        "retail", data_version=D, backbone_sha256="a" * 64, config={}, code_version="x"
    ),
    "list_versions": lambda sc: sc.reg.list_versions(),
    "get_version": lambda sc: sc.reg.get_version("retail", 1),
    "lookup": lambda sc: sc.reg.lookup("retail", "@production"),
    "domains": lambda sc: sc.reg.domains(),
    "fetch_artifact": lambda sc: sc.reg.fetch_artifact("retail", 1, sc.tmp / "out"),
    "artifact_files": lambda sc: sc.reg.artifact_files("retail", 1),
    "diff": lambda sc: sc.reg.diff("retail", 1, 2),
    "aliases": lambda sc: sc.reg.aliases("retail"),
    "alias_targets": lambda sc: sc.reg.alias_targets(),
    "resolve": lambda sc: sc.reg.resolve("retail"),
    "protected_aliases": lambda sc: sc.reg.protected_aliases("retail"),
    "requests": lambda sc: sc.reg.requests(),
    "get_request": lambda sc: sc.reg.get_request(sc.pending),
    "history": lambda sc: sc.reg.history("retail"),
    "alias_at": lambda sc: sc.reg.alias_at("retail", datetime.now(UTC)),
    "predictions": lambda sc: sc.reg.predictions("retail", 1, D),
    "thumbnails": lambda sc: sc.reg.thumbnails("retail", D, "test"),
    "auth_enabled": lambda sc: sc.reg.auth_enabled(),
    "list_users": lambda sc: sc.reg.list_users(),
    "get_user": lambda sc: sc.reg.get_user("ben"),
    "authenticate": lambda sc: sc.reg.authenticate(sc.token),
    "session_user": lambda sc: sc.reg.session_user(sc.session),
    "audit_log": lambda sc: sc.reg.audit_log(),
    "monitoring": lambda sc: sc.reg.monitoring("retail"),
    "monitor_targets": lambda sc: sc.reg.monitor_targets(),
    "shadow_evidence": lambda sc: sc.reg.shadow_evidence("retail", 2, 1),
    "drift_history": lambda sc: sc.reg.drift_history("retail"),
    "latest_drift": lambda sc: sc.reg.latest_drift(),
}
"""Methods that only read: calling them changes nothing."""

NOT_ACTIONS = {
    "from_settings": "builds a registry from the settings",
    "transaction": "the unit of work the methods above open; data functions called in it "
    "directly are the registry's own internals, not an API action",
    "record_monitoring": "servers' telemetry (shadow counts, disagreements, drift points), "
    "added every few seconds by every replica and kept to caps: an audit record per report "
    "would flood the log; the decisions taken on it (approvals, drift retrains) are audited",
}


def _rollback(sc: Scene) -> None:
    sc.reg.approve(sc.pending, reviewer="ben")  # production v1 -> v2, then back
    sc.reg.rollback("retail", 1, actor="ben", reason="back to v1")


def _claim(sc: Scene, now: datetime | None = None) -> datetime:
    sc.reg.set_monitoring("retail", MonitoringSettings(drift_threshold=0.2), actor="ana")
    now = now or datetime.now(UTC)
    claimed, _ = sc.reg.claim_drift_retrain(
        "retail", cooldown=timedelta(hours=1), actor="drift-check", detail={}, now=now
    )
    assert claimed
    return now


def _release(sc: Scene) -> None:
    claimed_at = _claim(sc)
    sc.reg.release_drift_retrain(
        "retail", claimed_at=claimed_at, previous=None, actor="drift-check", error="no run"
    )


def _request_again(sc: Scene) -> None:
    sc.reg.reject(sc.pending, reviewer="ben", comment="ask again")
    return sc.reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)


def public_methods() -> set[str]:
    return {name for name in dir(PromptRegistry) if not name.startswith("_")} - {"url", "store"}


def state(reg: PromptRegistry) -> tuple:
    """Every row of every table but the audit log, and the blobs in the store."""
    tables = sorted(set(inspect(get_engine(reg.url)).get_table_names()) - {"audit_log"})
    with session_scope(reg.url) as s:
        rows = {t: sorted(map(repr, s.execute(text(f"SELECT * FROM {t}")).all())) for t in tables}
    return rows, sorted(reg.store.list())


def audit_ids(reg: PromptRegistry) -> int:
    with session_scope(reg.url) as s:
        return max(s.scalars(select(m.AuditRecord.id)), default=0)


def test_every_public_method_is_listed_as_an_action_or_a_read():
    listed = set(ACTIONS) | set(READS) | set(NOT_ACTIONS)
    missing, gone = public_methods() - listed, listed - public_methods()
    assert not missing and not gone, f"not listed: {sorted(missing)}; gone: {sorted(gone)}"


@pytest.mark.parametrize("method", sorted(ACTIONS))
def test_each_action_that_changes_the_registry_writes_its_audit_record(reg, tmp_path, method):
    scene = Scene(reg, tmp_path)
    action, call = ACTIONS[method]
    before, last = state(reg), audit_ids(reg)
    call(scene)
    assert state(reg) != before or method == "record_audit", f"{method}: nothing to audit"
    new = [e for e in reg.audit_log(limit=50) if e.id > last]
    assert action in [e.action for e in new], f"{method} wrote {[e.action for e in new]}"


@pytest.mark.parametrize("method", sorted(READS))
def test_reads_change_nothing_and_write_no_audit_record(reg, tmp_path, method):
    scene = Scene(reg, tmp_path)
    before, last = state(reg), audit_ids(reg)
    READS[method](scene)
    assert state(reg) == before and audit_ids(reg) == last


def test_registration_is_audited_with_the_version_and_a_retry_says_so(reg, tmp_path):
    scene = Scene(reg, tmp_path)
    version, request = scene.candidate()
    again, _ = scene.candidate()  # the flow retried: same run, domain and data version
    assert again.number == version.number
    entries = [e for e in reversed(reg.audit_log(domain="retail")) if e.actor == "ben"]
    got = [(e.action, e.version, e.detail.get("retry", False)) for e in entries]
    assert got[-3:] == [("register", 3, False), ("request", 3, False), ("register", 3, True)]
    assert entries[-3].detail["data_version"] == D and entries[-2].request_id == request.id
