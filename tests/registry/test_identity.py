"""Users, roles, tokens, sessions, protected aliases and the audit log, on SQLite and
PostgreSQL. Each rule has a test that fails without it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from registry import (
    ConflictError,
    InvalidRecord,
    NotFoundError,
    PermissionDenied,
    Policy,
    RegistryError,
    RuleViolation,
)
from registry import models as m
from registry.db import session_scope

from .conftest import BACKBONE, make_artifact, metrics
from .test_registry import data

POLICY = Policy("accuracy", max_class_regression=0.05)


@pytest.fixture
def people(reg):
    """ana requests, ben and cy review, vic views, root administers: auth is on."""
    tokens = {}
    for name, role in (
        ("ana", "requester"),
        ("ben", "reviewer"),
        ("cy", "reviewer"),
        ("vic", "viewer"),
        ("root", "admin"),
    ):
        tokens[name] = reg.add_user(name, role)[1]
    return tokens


def register(reg, tmp_path, tag, acc=0.8, created_by="ana"):
    return reg.register_version(
        "retail",
        make_artifact(tmp_path / f"art-{tag}", tag),
        method="mpt",
        config={"preset": "mpt", "tag": tag},
        data_version="d" * 32,
        backbone=BACKBONE,
        metrics={"test": metrics(acc, a=acc, b=acc)},
        created_by=created_by,
    )


@pytest.fixture
def candidate(reg, tmp_path):
    data(reg)
    register(reg, tmp_path, "one", 0.8, created_by="ana")
    register(reg, tmp_path, "two", 0.9, created_by="ana")


# ---------------------------------------------------------------- tokens
def test_a_token_is_shown_once_and_only_its_salted_hash_is_stored(reg):
    user, token = reg.add_user("ben", "reviewer")
    assert user.name == "ben" and user.role == "reviewer" and user.active
    assert token.startswith("mpt_") and len(token) > 50
    assert reg.authenticate(token).name == "ben"
    reg.add_user("cy", "reviewer")
    with session_scope(reg.url) as s:
        rows = list(s.scalars(select(m.User)))
        stored = " ".join(str(getattr(u, c.name)) for u in rows for c in m.User.__table__.c)
    secret = token.split("_", 2)[2]
    assert secret not in stored and token not in stored
    assert len({u.token_salt for u in rows}) == 2  # a salt per user
    assert "token" not in user.to_dict() and not any("hash" in k for k in user.to_dict())


def test_wrong_unknown_malformed_revoked_and_rotated_tokens_are_refused(reg):
    _, token = reg.add_user("ben", "reviewer")
    key = token[: len("mpt_") + 16]
    forged = key + "_" + "A" * 43
    unknown = "mpt_" + "0" * 16 + "_" + token.split("_", 2)[2]
    for bad in (forged, unknown, "", None, "mpt_x", token + "x", token.upper()):
        assert reg.authenticate(bad) is None
    assert reg.authenticate(f"  {token}\n").name == "ben"  # pasted with whitespace
    _, new = reg.rotate_token("ben")
    assert reg.authenticate(token) is None and reg.authenticate(new).name == "ben"
    reg.revoke_user("ben")
    assert reg.authenticate(new) is None


def test_an_unknown_key_costs_as_much_as_a_wrong_secret(reg):
    """The refusal takes the same work either way: timing does not reveal who exists."""
    _, token = reg.add_user("ben", "reviewer")
    wrong_secret = token[: len("mpt_") + 17] + "B" * 43
    unknown_key = "mpt_" + "f" * 16 + "_" + "B" * 43

    def cost(t: str) -> float:
        started = time.perf_counter()
        for _ in range(3):
            assert reg.authenticate(t) is None
        return (time.perf_counter() - started) / 3

    a, b = cost(wrong_secret), cost(unknown_key)
    assert b > 0.01 and 0.33 < a / b < 3  # both pay for one scrypt


def test_names_roles_and_duplicates_are_checked(reg):
    with pytest.raises(InvalidRecord, match="unknown role 'boss'; roles are viewer, requester"):
        reg.add_user("ben", "boss")
    with pytest.raises(InvalidRecord, match="user name 'a b' is not allowed"):
        reg.add_user("a b", "viewer")
    reg.add_user("ben", "reviewer")
    with pytest.raises(ConflictError, match=r"'ben' already exists .*mpt user rotate ben"):
        reg.add_user("ben", "viewer")
    reg.revoke_user("ben")
    with pytest.raises(ConflictError, match="revoked"):  # a name is never reused
        reg.add_user("ben", "viewer")
    with pytest.raises(PermissionDenied, match="revoked"):
        reg.rotate_token("ben")
    with pytest.raises(NotFoundError, match="user 'nobody' does not exist"):
        reg.revoke_user("nobody")
    assert [(u.name, u.active) for u in reg.list_users()] == [("ben", False)]


# ---------------------------------------------------------------- when auth is on
def test_auth_is_on_once_an_active_person_exists_or_when_required(reg, monkeypatch):
    assert not reg.auth_enabled()
    reg.ensure_service_account("retrain-flow")
    assert not reg.auth_enabled()  # service accounts never turn it on
    reg.add_user("ben", "reviewer")
    assert reg.auth_enabled()
    reg.revoke_user("ben")
    assert not reg.auth_enabled()
    monkeypatch.setenv("MPT_AUTH", "required")
    assert reg.auth_enabled()
    monkeypatch.setenv("MPT_AUTH", "sometimes")
    with pytest.raises(RegistryError, match="MPT_AUTH='sometimes' is not understood"):
        reg.auth_enabled()


def test_only_reviewers_and_admins_decide(reg, people, candidate):
    req = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    with pytest.raises(
        PermissionDenied, match=rf"vic is a viewer; approving request #{req.id} needs the reviewer"
    ):
        reg.approve(req.id, reviewer="vic")
    with pytest.raises(PermissionDenied, match="'ghost' is not an active user"):
        reg.reject(req.id, reviewer="ghost", comment="no")
    reg.revoke_user("cy")
    with pytest.raises(PermissionDenied, match="'cy' is not an active user"):
        reg.approve(req.id, reviewer="cy")
    assert reg.resolve("retail") is None and reg.get_request(req.id).status == "pending"
    reg.approve(req.id, reviewer="root")  # admins may decide too
    assert reg.resolve("retail") == 1


def test_a_requester_cannot_decide_someone_elses_request(reg, people, candidate):
    req = reg.request_promotion("retail", 1, requested_by="ben", policy=POLICY)
    with pytest.raises(PermissionDenied, match="ana is a requester; approving"):
        reg.approve(req.id, reviewer="ana")
    with pytest.raises(PermissionDenied, match="ana is a requester; rejecting"):
        reg.reject(req.id, reviewer="ana", comment="no")
    assert reg.get_request(req.id).status == "pending"


def test_reviewer_is_never_the_requester_even_for_reviewers(reg, people, candidate):
    req = reg.request_promotion("retail", 1, requested_by="ben", policy=POLICY)
    with pytest.raises(RuleViolation, match=r"ben requested .* cannot review it"):
        reg.approve(req.id, reviewer="ben")
    reg.approve(req.id, reviewer="cy")


def test_viewers_and_unknown_names_cannot_request_or_register(reg, people, candidate, tmp_path):
    with pytest.raises(PermissionDenied, match="vic is a viewer; requesting a promotion"):
        reg.request_promotion("retail", 1, requested_by="vic", policy=POLICY)
    with pytest.raises(PermissionDenied, match="'ghost' is not an active user"):
        reg.request_promotion("retail", 1, requested_by="ghost", policy=POLICY)
    with pytest.raises(PermissionDenied, match="vic is a viewer; registering a version"):
        register(reg, tmp_path, "three", created_by="vic")
    assert reg.requests() == [] and len(reg.list_versions("retail")) == 2


def test_the_flow_acts_as_a_service_account_that_requests_but_never_decides(reg, people, candidate):
    with pytest.raises(PermissionDenied, match="'retrain-flow' is not an active user"):
        reg.request_promotion("retail", 1, requested_by="retrain-flow", policy=POLICY)
    flow = reg.ensure_service_account("retrain-flow")
    assert flow.service and flow.role == "requester"
    assert reg.ensure_service_account("retrain-flow") == flow  # idempotent
    req = reg.request_promotion("retail", 1, requested_by="retrain-flow", policy=POLICY)
    other = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    with pytest.raises(PermissionDenied, match="retrain-flow is a requester"):
        reg.approve(other.id, reviewer="retrain-flow")
    with pytest.raises(PermissionDenied, match="service account"):
        reg.rotate_token("retrain-flow")  # it can never get a token
    with pytest.raises(ConflictError, match="person's account"):
        reg.ensure_service_account("ben")
    reg.approve(req.id, reviewer="ben")


def test_production_and_protected_aliases_move_only_by_reviewers(reg, people, candidate):
    promote = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY)
    reg.approve(promote.id, reviewer="ben")
    second = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    reg.approve(second.id, reviewer="ben")
    with pytest.raises(
        PermissionDenied, match="ana is a requester; rolling back retail:production"
    ):
        reg.rollback("retail", 1, actor="ana", reason="broken")
    assert reg.resolve("retail") == 2
    reg.rollback("retail", 1, actor="cy", reason="broken")

    reg.set_alias("retail", "staging", 2, actor="ana")  # a free alias: requesters move it
    with pytest.raises(PermissionDenied, match="ben is a reviewer; changing which aliases"):
        reg.protect_alias("retail", "staging", actor="ben")
    assert reg.protect_alias("retail", "staging", actor="root") == ["production", "staging"]
    with pytest.raises(PermissionDenied, match="ana is a requester; moving retail:staging"):
        reg.set_alias("retail", "staging", 1, actor="ana")
    reg.set_alias("retail", "staging", 1, actor="ben")
    assert reg.resolve("retail", "staging") == 1
    with pytest.raises(PermissionDenied, match="always protected"):
        reg.protect_alias("retail", "production", actor="root", protect=False)
    assert reg.protect_alias("retail", "staging", actor="root", protect=False) == ["production"]
    reg.set_alias("retail", "staging", 2, actor="ana")


def test_without_users_names_stay_free_text(reg, candidate):
    """Auth off (no user yet): the platform works as before, for a single team."""
    req = reg.request_promotion("retail", 1, requested_by="anyone", policy=POLICY)
    reg.approve(req.id, reviewer="someone-else")
    assert reg.resolve("retail") == 1


def test_user_administration_needs_an_admin_or_direct_database_access(reg, people):
    with pytest.raises(PermissionDenied, match="ben is a reviewer; adding a user"):
        reg.add_user("dee", "admin", actor="ben")
    with pytest.raises(PermissionDenied, match="ben is a reviewer; revoking a user"):
        reg.revoke_user("ana", actor="ben")
    user, _ = reg.add_user("dee", "viewer", actor="root")
    assert user.created_by == "root"
    user, _ = reg.add_user("eve", "viewer")  # the operator's bootstrap path
    assert user.created_by.startswith("operator:")


# ---------------------------------------------------------------- sessions
def test_sessions_expire_end_at_logout_and_die_with_revocation_or_rotation(reg, people):
    secret = reg.create_session("ben", ttl=timedelta(hours=1), address="10.0.0.7")
    assert reg.session_user(secret).name == "ben"
    assert reg.session_user("forged") is None and reg.session_user(None) is None
    reg.end_session(secret)
    assert reg.session_user(secret) is None
    short = reg.create_session("ben", ttl=timedelta(milliseconds=50))
    time.sleep(0.2)
    assert reg.session_user(short) is None
    alive = reg.create_session("ben", ttl=timedelta(hours=1))
    reg.rotate_token("ben")
    assert reg.session_user(alive) is None
    alive = reg.create_session("ana", ttl=timedelta(hours=1))
    reg.revoke_user("ana")
    assert reg.session_user(alive) is None
    with pytest.raises(PermissionDenied, match="cannot log in"):
        reg.create_session("ana", ttl=timedelta(hours=1))
    with session_scope(reg.url) as s:
        assert secret not in " ".join(s.scalars(select(m.UserSession.secret_sha256)))


# ---------------------------------------------------------------- audit
def test_every_decision_is_audited_with_who_when_where_and_what(reg, people, candidate):
    req = reg.request_promotion("retail", 1, requested_by="ana", policy=POLICY, address="10.0.0.1")
    with pytest.raises(PermissionDenied):
        reg.approve(req.id, reviewer="vic", address="10.0.0.2")
    reg.approve(req.id, reviewer="ben", comment="looks good", address="10.0.0.3")
    second = reg.request_promotion("retail", 2, requested_by="ana", policy=POLICY)
    reg.reject(second.id, reviewer="cy", comment="not now", address="10.0.0.4")
    decisions = ("request", "approve", "reject")  # the fixture's registrations come first
    entries = [e for e in reg.audit_log(domain="retail") if e.action in decisions]
    got = [(e.action, e.actor, e.outcome, e.address, e.version) for e in reversed(entries)]
    assert got == [
        ("request", "ana", "ok", "10.0.0.1", 1),
        ("approve", "vic", "refused", "10.0.0.2", None),
        ("approve", "ben", "ok", "10.0.0.3", 1),
        ("request", "ana", "ok", None, 2),
        ("reject", "cy", "ok", "10.0.0.4", 2),
    ]
    refused = entries[-2]
    assert "vic is a viewer" in refused.detail["error"] and refused.request_id == req.id
    approved = entries[-3]
    assert approved.detail["comment"] == "looks good" and approved.detail["kind"] == "promotion"
    assert approved.at >= refused.at and approved.alias == "production"
    assert reg.resolve("retail") == 1  # the refused approval moved nothing


def test_user_changes_and_logins_are_audited(reg):
    reg.add_user("ben", "reviewer", address="cli host")
    secret = reg.create_session("ben", ttl=timedelta(hours=1), address="10.0.0.9")
    reg.end_session(secret, address="10.0.0.9")
    reg.record_audit("login", "(unknown)", outcome="refused", address="10.6.6.6")
    reg.rotate_token("ben")
    reg.revoke_user("ben")
    got = [(e.action, e.outcome) for e in reversed(reg.audit_log())]
    assert got == [
        ("user_add", "ok"),
        ("login", "ok"),
        ("logout", "ok"),
        ("login", "refused"),
        ("user_rotate", "ok"),
        ("user_revoke", "ok"),
    ]
    with pytest.raises(InvalidRecord, match="audit outcome 'maybe'"):
        reg.record_audit("login", "x", outcome="maybe")
