"""Registry rules, lineage, history and artifacts, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from registry import ConflictError, InvalidRecord, NotFoundError, Policy, RuleViolation, upgrade
from registry.db import get_engine
from registry.errors import ArtifactCorruptedError
from registry.migrate import current_revision, downgrade, head_revision
from registry.models import Base

from .conftest import BACKBONE, make_artifact, metrics

POLICY = Policy("accuracy", min_improvement=0.0, max_class_regression=0.05)


def data(reg, md5="d" * 32, passed=True, domain="retail"):
    return reg.record_data_version(
        domain, md5, rows=10, row_counts={"train": 6, "test": 4}, validation_passed=passed
    )


def register(
    reg, tmp_path, tag, acc=0.8, domain="retail", md5="d" * 32, primary_metric=None, **per_class
):
    return reg.register_version(
        domain,
        make_artifact(tmp_path / f"art-{domain}-{tag}", tag),
        method="mpt",
        config={"preset": "mpt", "tag": tag},
        data_version=md5,
        backbone=BACKBONE,
        metrics={"test": metrics(acc, **(per_class or {"a": acc, "b": acc}))},
        created_by="trainer",
        flow_run_id=f"run-{tag}",
        primary_metric=primary_metric,
    )


def promote(reg, domain, number, requester="ana", reviewer="ben"):
    req = reg.request_promotion(domain, number, requested_by=requester, policy=POLICY)
    return reg.approve(req.id, reviewer=reviewer)


# ---------------------------------------------------------------- migrations
def test_migrations_upgrade_from_empty_downgrade_and_match_the_models(db_url):
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(db_url)
    assert current_revision(db_url) is None
    tables = set(inspect(get_engine(db_url)).get_table_names()) - {"alembic_version"}
    assert tables == set()
    upgrade(db_url)
    assert set(Base.metadata.tables) <= set(inspect(get_engine(db_url)).get_table_names())


def test_the_primary_metric_migration_keeps_the_versions_and_old_rows_read_none(
    reg, db_url, tmp_path
):
    data(reg)
    register(reg, tmp_path, "one", primary_metric="macro_f1")
    assert reg.get_version("retail", 1).primary_metric == "macro_f1"
    downgrade(db_url, "0004")
    columns = {c["name"] for c in inspect(get_engine(db_url)).get_columns("prompt_versions")}
    assert "primary_metric" not in columns and "search" in columns
    upgrade(db_url)
    old = reg.get_version("retail", 1)  # a row written before the column existed
    assert old.primary_metric is None and old.metrics("test")["accuracy"] == 0.8
    assert register(reg, tmp_path, "two", primary_metric="accuracy").primary_metric == "accuracy"


# ---------------------------------------------------------------- versions and lineage
def test_versions_are_numbered_per_domain_with_full_lineage(reg, tmp_path):
    data(reg)
    data(reg, domain="medical")
    v1, v2 = register(reg, tmp_path, "one"), register(reg, tmp_path, "two")
    m1 = register(reg, tmp_path, "m", domain="medical")
    assert (v1.number, v2.number, m1.number) == (1, 2, 1)
    assert v2.data_version == "d" * 32 and v2.backbone.weights_sha256 == "a" * 64
    assert v2.flow_run_id == "run-two" and v2.created_by == "trainer" and v2.code_version
    assert v2.status == "candidate" and v2.metrics("test")["accuracy"] == 0.8
    assert len(v2.artifact_sha256) == 64 and v2.artifact_size > 0
    assert [v.number for v in reg.list_versions("retail")] == [1, 2]
    found = reg.find_version(
        "retail",
        data_version="d" * 32,
        backbone_sha256="a" * 64,
        config={"tag": "two", "preset": "mpt"},
        code_version=v2.code_version,
    )
    assert found.number == 2


def test_registration_needs_a_recorded_validated_data_version_and_leaves_no_half_version(
    reg, tmp_path
):
    with pytest.raises(NotFoundError, match=r"data version .* is not recorded"):
        register(reg, tmp_path, "x", md5="e" * 32)
    data(reg, md5="f" * 32, passed=False)
    with pytest.raises(RuleViolation, match="failed validation"):
        register(reg, tmp_path, "y", md5="f" * 32)
    assert reg.list_versions() == []
    orphans = reg.gc(dry_run=True)
    assert len(orphans) == 2  # the uploads of both refused registrations
    assert reg.gc() == orphans and list(reg.store.list()) == []


def test_artifact_round_trip_and_corruption_names_the_version(reg, tmp_path):
    data(reg)
    v = register(reg, tmp_path, "one")
    out = reg.fetch_artifact("retail", 1, tmp_path / "out")
    assert (out / "prompts.safetensors").read_bytes() == b"tensors-one"
    blob_path = next(
        p
        for p in (tmp_path / "artifacts").rglob("*")
        if p.is_file() and v.artifact_sha256 in p.name
    )
    blob_path.write_bytes(b"tampered")
    with pytest.raises(ArtifactCorruptedError, match="retail v1"):
        reg.fetch_artifact("retail", 1, tmp_path / "again")


# ---------------------------------------------------------------- promotion rules
def test_reviewer_cannot_be_the_requester(reg, tmp_path):
    data(reg)
    register(reg, tmp_path, "one")
    req = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    with pytest.raises(RuleViolation, match=r"ana requested #.* and cannot review it"):
        reg.approve(req.id, reviewer="ana")
    with pytest.raises(RuleViolation, match="cannot review it"):
        reg.reject(req.id, reviewer="ana", comment="no")
    assert reg.resolve("retail") is None


def test_decisions_are_final(reg, tmp_path):
    data(reg)
    register(reg, tmp_path, "one")
    register(reg, tmp_path, "two")
    req = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    reg.reject(req.id, reviewer="ben", comment="not yet")
    with pytest.raises(RuleViolation, match=r"already rejected by ben .* decisions are final"):
        reg.approve(req.id, reviewer="cy")
    approved = promote(reg, "retail", 2)
    with pytest.raises(RuleViolation, match="already approved"):
        reg.reject(approved.id, reviewer="cy", comment="changed my mind")
    assert reg.get_request(req.id).status == "rejected"


def test_production_moves_only_through_an_approved_request(reg, tmp_path):
    data(reg)
    register(reg, tmp_path, "one")
    with pytest.raises(RuleViolation, match="production moves only through an approved promotion"):
        reg.set_alias("retail", "production", 1, actor="ana")
    reg.set_alias("retail", "staging", 1, actor="ana", reason="try it")  # free aliases move freely
    assert reg.resolve("retail", "staging") == 1 and reg.resolve("retail") is None
    req = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    assert req.policy_passed and req.policy_report["production"] is None
    reg.approve(req.id, reviewer="ben", comment="first one")
    assert reg.resolve("retail") == 1
    (entry,) = reg.history("retail", "production")
    assert (entry.kind, entry.actor, entry.request_id, entry.to_version) == (
        "promotion",
        "ben",
        req.id,
        1,
    )


def test_policy_failure_blocks_approval_unless_overridden_and_recorded(reg, tmp_path):
    data(reg)
    register(reg, tmp_path, "one", acc=0.80, a=0.9, b=0.7)
    promote(reg, "retail", 1)
    register(reg, tmp_path, "two", acc=0.82, a=0.7, b=0.94)  # better overall, class a drops 0.2
    req = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    assert not req.policy_passed
    assert "worst: 'a' -0.2000" in " ".join(req.policy_report["reasons"])
    assert req.policy_report["data_version"] == "d" * 32
    with pytest.raises(RuleViolation, match=r"failed its promotion policy .*--override"):
        reg.approve(req.id, reviewer="ben")
    assert reg.resolve("retail") == 1
    reg.approve(req.id, reviewer="ben", override_reason="class a relabelled; accepted by QA")
    assert reg.resolve("retail") == 2
    last = reg.history("retail", "production")[-1]
    assert last.kind == "override" and last.reason == "class a relabelled; accepted by QA"


def test_policy_compares_on_the_same_data_version(reg, tmp_path):
    data(reg, md5="1" * 32)
    register(reg, tmp_path, "old", md5="1" * 32, acc=0.9)
    promote(reg, "retail", 1)
    data(reg, md5="2" * 32)
    register(reg, tmp_path, "new", md5="2" * 32, acc=0.7)
    req = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    assert (
        not req.policy_passed and "production has no 'accuracy'" in req.policy_report["reasons"][0]
    )
    reg.reject(req.id, reviewer="ben", comment="evaluate production on the new data first")
    reg.record_evaluation("retail", 1, "2" * 32, "test", metrics(0.6, a=0.6, b=0.6))
    req = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    assert req.policy_passed and req.policy_report["production"] == 0.6
    assert reg.diff("retail", 1, 2)["metrics"]["accuracy"] == pytest.approx((0.6, 0.7, 0.1))


def test_superseded_request_is_refused(reg, tmp_path):
    data(reg)
    for tag in ("one", "two", "three"):
        register(reg, tmp_path, tag, acc=0.8)
    promote(reg, "retail", 1)
    stale = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    promote(reg, "retail", 3)
    with pytest.raises(
        RuleViolation,
        match="superseded: retail:production pointed at v1 when it was opened and now points at v3",
    ):
        reg.approve(stale.id, reviewer="ben")
    assert reg.get_request(stale.id).status == "pending" and reg.resolve("retail") == 3


def test_a_new_request_supersedes_the_stale_one_for_the_same_version(reg, tmp_path):
    data(reg)
    for tag in ("one", "two", "three"):
        register(reg, tmp_path, tag, acc=0.8)
    promote(reg, "retail", 1)
    stale = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    with pytest.raises(RuleViolation, match=rf"request #{stale.id} .* still current .* decide it"):
        reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    promote(reg, "retail", 3)
    with pytest.raises(RuleViolation, match=r"`mpt promote request retail 2`\): it replaces"):
        reg.approve(stale.id, reviewer="ben")
    fresh = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    old = reg.get_request(stale.id)
    assert (old.status, old.superseded_by, old.reviewer) == ("superseded", fresh.id, None)
    assert "moved from v1 to v3" in old.comment and fresh.base_version == 3
    assert [r.id for r in reg.requests("retail", "superseded")] == [stale.id]
    with pytest.raises(RuleViolation, match=rf"superseded by request #{fresh.id} .* decide #"):
        reg.approve(stale.id, reviewer="ben")
    entry = next(e for e in reg.audit_log(domain="retail") if e.action == "supersede")
    assert (entry.request_id, entry.detail["by"], entry.actor) == (stale.id, fresh.id, "ana")
    assert reg.approve(fresh.id, reviewer="ben").status == "approved"
    assert reg.resolve("retail") == 2


def test_a_request_whose_production_lacks_the_data_says_how_to_evaluate_it(reg, tmp_path):
    data(reg, md5="1" * 32)
    register(reg, tmp_path, "old", md5="1" * 32)
    promote(reg, "retail", 1)
    data(reg, md5="2" * 32)
    register(reg, tmp_path, "new", md5="2" * 32)
    req = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    assert req.policy_report["reasons"] == [
        f"production has no 'accuracy' on test of data version {'2' * 32}; evaluate it on this "
        f"data version first: `mpt registry evaluate retail 1 --data-version {'2' * 32}`, "
        "then request again"
    ]


def test_superseded_first_request_says_production_was_unset(reg, tmp_path):
    data(reg)
    for tag in ("one", "two"):
        register(reg, tmp_path, tag, acc=0.8)
    first = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    promote(reg, "retail", 2)
    with pytest.raises(RuleViolation, match="was unset when it was opened and now points at v2"):
        reg.approve(first.id, reviewer="ben")


def test_rollback_returns_to_an_earlier_production_version_and_is_recorded(reg, tmp_path):
    data(reg)
    for tag in ("one", "two", "three"):
        register(reg, tmp_path, tag)
    promote(reg, "retail", 1)
    promote(reg, "retail", 2)
    with pytest.raises(RuleViolation, match="v3 was never production"):
        reg.rollback("retail", 3, actor="ops", reason="x")
    entry = reg.rollback("retail", 1, actor="ops", reason="v2 misclassifies sandals")
    assert (entry.kind, entry.from_version, entry.to_version) == ("rollback", 2, 1)
    assert reg.resolve("retail") == 1
    kinds = [(h.kind, h.from_version, h.to_version) for h in reg.history("retail", "production")]
    assert kinds == [("promotion", None, 1), ("promotion", 1, 2), ("rollback", 2, 1)]


def test_alias_targets_map_every_domain_to_its_alias_in_one_call(reg, tmp_path):
    assert reg.alias_targets() == {}
    data(reg)
    data(reg, domain="medical")
    register(reg, tmp_path, "one")
    register(reg, tmp_path, "two")
    register(reg, tmp_path, "m", domain="medical")
    assert reg.alias_targets() == {"medical": None, "retail": None}
    promote(reg, "retail", 1)
    reg.set_alias("medical", "staging", 1, actor="ops")
    assert reg.alias_targets() == {"medical": None, "retail": 1}
    assert reg.alias_targets("staging") == {"medical": 1, "retail": None}
    promote(reg, "retail", 2)
    reg.rollback("retail", 1, actor="ops", reason="v2 misreads sandals")
    assert reg.alias_targets()["retail"] == 1


def test_what_was_production_at_time_t(reg, tmp_path):
    data(reg)
    for tag in ("one", "two"):
        register(reg, tmp_path, tag)
    before = datetime.now(UTC)
    time.sleep(0.01)
    promote(reg, "retail", 1)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    promote(reg, "retail", 2)
    assert reg.alias_at("retail", before) is None
    assert reg.alias_at("retail", between) == 1
    assert reg.alias_at("retail", datetime.now(UTC)) == 2


def test_history_is_append_only(reg, tmp_path):
    data(reg)
    for tag in ("one", "two"):
        register(reg, tmp_path, tag)
    promote(reg, "retail", 1)
    first = reg.history("retail")
    promote(reg, "retail", 2)
    reg.rollback("retail", 1, actor="ops", reason="incident 42")
    assert reg.history("retail")[: len(first)] == first
    # in the database itself: no client, however it connects, can rewrite the past
    engine = sqlalchemy.create_engine(reg.url)
    for statement in ("UPDATE alias_history SET actor = 'mallory'", "DELETE FROM alias_history"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), engine.begin() as c:
            c.execute(sqlalchemy.text(statement))
    engine.dispose()
    assert [h.actor for h in reg.history("retail")] == ["ben", "ben", "ops"]


def test_concurrent_approvals_cannot_both_win(reg, tmp_path, db_url):
    n = 4 if db_url.startswith("sqlite") else 12  # SQLite serialises writers anyway
    data(reg)
    register(reg, tmp_path, "base")
    promote(reg, "retail", 1)
    requests = []
    for i in range(n):
        v = register(reg, tmp_path, f"c{i}", acc=0.9)
        requests.append(
            reg.request_promotion("retail", v.number, requested_by="ana", policy=POLICY)
        )
    barrier = threading.Barrier(n + 1)
    outcomes: list[str] = []
    seen: set = set()
    stop = threading.Event()

    def approve(req):
        barrier.wait()
        try:
            reg.approve(req.id, reviewer=f"reviewer-{req.id}")
            outcomes.append("won")
        except (RuleViolation, ConflictError):
            outcomes.append("lost")

    def read():
        barrier.wait()
        while not stop.is_set():
            seen.add(reg.resolve("retail"))

    threads = [threading.Thread(target=approve, args=(r,)) for r in requests]
    reader = threading.Thread(target=read)
    for t in [*threads, reader]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert outcomes.count("won") == 1, outcomes
    assert None not in seen  # never a moment without a production version
    history = reg.history("retail", "production")
    assert len(history) == 2 and history[-1].from_version == 1
    assert reg.resolve("retail") == history[-1].to_version


def test_a_version_reads_production_while_production_points_at_it(reg, tmp_path):
    data(reg)
    for tag in ("one", "two"):
        register(reg, tmp_path, tag)
    promote(reg, "retail", 1)
    assert [v.state for v in reg.list_versions("retail")] == ["production", "candidate"]
    promote(reg, "retail", 2)
    assert [v.state for v in reg.list_versions("retail")] == ["candidate", "production"]
    assert all(v.status == "candidate" for v in reg.list_versions("retail"))


def test_a_version_is_looked_up_by_number_or_alias(reg, tmp_path):
    data(reg)
    for tag in ("one", "two"):
        register(reg, tmp_path, tag)
    promote(reg, "retail", 2)
    assert [reg.lookup("retail", ref).number for ref in (1, "1", "v1", "@production")] == [
        1,
        1,
        1,
        2,
    ]
    with pytest.raises(NotFoundError, match=r"no alias 'staging' \(aliases: @production\)"):
        reg.lookup("retail", "@staging")
    with pytest.raises(NotFoundError, match=r"retail v7 does not exist; versions are 1\.\.2"):
        reg.lookup("retail", "7")
    with pytest.raises(InvalidRecord, match=r"give a number \(3\) or an alias \(@production\)"):
        reg.lookup("retail", "latest")
