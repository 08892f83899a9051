"""Decisions from the pages: the registry's rules apply and the refusals come back on the
page, with nothing moved (TestClient, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from .builders import POLICY, regressing_request
from .conftest import csrf_of
from .test_pages import text


def post(client, path: str, **data):
    page = client.get(path.rsplit("/", 1)[0])
    return client.post(path, data={"csrf_token": csrf_of(page.text), **data})


def test_a_reviewer_approves_and_the_alias_moves_with_an_audit_record(as_user, reg, scene):
    client = as_user("ben")
    response = post(client, f"/requests/{scene.request_id}/approve", comment="better")
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{scene.request_id}?done=approved"
    page = client.get(response.headers["location"])
    assert "Approved: the alias moved." in text(page) and "Approved by ben" in text(page)
    assert reg.resolve(scene.domain) == 2
    entry = next(e for e in reg.audit_log(domain=scene.domain) if e.action == "approve")
    assert (entry.actor, entry.outcome, entry.address) == ("ben", "ok", "testclient")
    assert entry.version == 2 and entry.detail["comment"] == "better"


def test_an_override_reason_on_a_passing_request_is_a_plain_approval(as_user, reg, scene):
    client = as_user("ben")
    response = post(client, f"/requests/{scene.request_id}/approve", override_reason="just in case")
    assert response.headers["location"] == f"/requests/{scene.request_id}?done=approved"
    page = client.get(response.headers["location"])
    assert "Approved: the alias moved." in text(page) and "with an override" not in text(page)
    assert reg.history(scene.domain)[-1].kind == "promotion"


def test_a_rejection_needs_a_comment_and_is_final(as_user, reg, scene):
    client = as_user("cy")
    refused = post(client, f"/requests/{scene.request_id}/reject", comment="  ")
    assert refused.status_code == 409 and "a rejection needs a comment" in text(refused)
    assert reg.get_request(scene.request_id).status == "pending"
    done = post(client, f"/requests/{scene.request_id}/reject", comment="not convinced")
    assert done.status_code == 303 and reg.get_request(scene.request_id).status == "rejected"
    again = post(as_user("ben"), f"/requests/{scene.request_id}/approve")
    assert again.status_code == 409
    assert f"request #{scene.request_id} was already rejected by cy" in text(again)
    assert reg.resolve(scene.domain) == 1


@pytest.mark.parametrize("who", ["ana", "ben"])
def test_the_requester_cannot_decide_their_own_request(as_user, reg, scene, tmp_path, who):
    if who == "ana":  # a requester opened it
        request_id = regressing_request(reg, tmp_path, scene, by="ana")
        actor, status = "ana", 409
    else:  # a reviewer opened it: still not theirs to decide
        reg.reject(scene.request_id, reviewer="cy", comment="replaced")
        request_id = reg.request_promotion(scene.domain, 2, requested_by="ben", policy=POLICY).id
        actor, status = "ben", 409
    page = as_user(actor).get(f"/requests/{request_id}")
    assert "You opened this request" in text(page)
    response = post(as_user(actor), f"/requests/{request_id}/approve", override_reason="mine")
    assert response.status_code == status
    assert f"{actor} requested #{request_id} and cannot review it" in text(response)
    assert reg.resolve(scene.domain) == 1
    refused = reg.audit_log(actor=actor)[0]
    assert refused.action == "approve" and refused.outcome == "refused"


def test_requesters_and_viewers_are_refused_by_role(as_user, reg, scene):
    for who, role in (("ana", "requester"), ("vic", "viewer")):
        response = post(as_user(who), f"/requests/{scene.request_id}/approve")
        assert response.status_code == 403
        assert f"{who} is a {role}; approving request #{scene.request_id} needs the reviewer" in (
            text(response)
        )
    assert reg.resolve(scene.domain) == 1 and reg.get_request(scene.request_id).status == "pending"


def test_a_failed_policy_needs_an_override_reason(as_user, reg, scene, tmp_path):
    failing = regressing_request(reg, tmp_path, scene, by="ana")
    client = as_user("ben")
    refused = post(client, f"/requests/{failing}/approve", comment="ship it")
    assert refused.status_code == 409 and "failed its promotion policy" in text(refused)
    assert reg.resolve(scene.domain) == 1
    done = post(client, f"/requests/{failing}/approve", override_reason="bags are rare")
    assert done.headers["location"].endswith("?done=overridden")
    assert reg.resolve(scene.domain) == 3
    assert reg.history(scene.domain)[-1].kind == "override"


def test_a_superseded_request_says_so_and_nothing_moves(as_user, reg, scene, tmp_path):
    failing = regressing_request(reg, tmp_path, scene, by="ana")
    reg.approve(scene.request_id, reviewer="cy")  # production moved v1 -> v2 meanwhile
    page = as_user("ben").get(f"/requests/{failing}")
    assert "Superseded: production moved from v1 to v2" in text(page)
    response = post(as_user("ben"), f"/requests/{failing}/approve", override_reason="x")
    assert response.status_code == 409
    assert f"request #{failing} is superseded" in text(response)
    assert reg.resolve(scene.domain) == 2


def test_a_decision_made_meanwhile_is_reported_not_repeated(as_user, reg, scene):
    client = as_user("ben")
    page = client.get(f"/requests/{scene.request_id}")  # the form was loaded ...
    reg.approve(scene.request_id, reviewer="cy")  # ... then someone else decided
    response = client.post(
        f"/requests/{scene.request_id}/approve", data={"csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 409
    assert "already approved by cy" in text(response) and "decisions are final" in text(response)
    assert [h.to_version for h in reg.history(scene.domain)] == [1, 2]


def test_rollback_from_the_domain_page(as_user, reg, scene):
    reg.approve(scene.request_id, reviewer="cy")
    refused = post(as_user("ana"), f"/domains/{scene.domain}/rollback", version="1", reason="x")
    assert refused.status_code == 403 and "ana is a requester; rolling back" in text(refused)
    client = as_user("ben")
    page = client.get(f"/domains/{scene.domain}")
    assert '<option value="1">v1</option>' in page.text and '<option value="2">' not in page.text
    empty = post(client, f"/domains/{scene.domain}/rollback", version="1", reason=" ")
    assert empty.status_code == 409 and "a rollback needs a reason" in text(empty)
    done = post(client, f"/domains/{scene.domain}/rollback", version="1", reason="v2 misreads bags")
    assert done.status_code == 303 and reg.resolve(scene.domain) == 1
    history = client.get(done.headers["location"])
    assert "Rolled back" in text(history) and "rollback production: v2 → v1 by ben" in text(history)
    never = post(client, f"/domains/{scene.domain}/rollback", version="7", reason="x")
    assert never.status_code == 404
    bad = post(client, f"/domains/{scene.domain}/rollback", version="one", reason="x")
    assert bad.status_code == 400 and "version" in text(bad)
