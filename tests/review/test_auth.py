"""Login, sessions and CSRF on the review pages (TestClient, SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import timedelta

from review import ReviewSettings, create_app

from .conftest import SECRET, csrf_of, login, nonce_of


def test_pages_need_a_login_and_come_back_after_it(client, scene, tokens):
    page = client.get(f"/requests/{scene.request_id}?x=1")
    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next=/requests/{scene.request_id}%3Fx%3D1"
    response = login(client, tokens["ben"], f"/requests/{scene.request_id}?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{scene.request_id}?x=1"
    cookie = response.headers["set-cookie"]
    assert "mpt_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get(f"/requests/{scene.request_id}").status_code == 200


def test_a_wrong_token_gets_one_answer_whatever_was_wrong(client, reg, tokens):
    real = tokens["ben"]
    unknown_key = "mpt_" + "0" * 16 + real[20:]
    wrong_secret = real[:21] + ("A" if real[21] != "A" else "B") + real[22:]
    reg.revoke_user("cy")
    answers = set()
    for token in (unknown_key, wrong_secret, tokens["cy"], "not a token", ""):
        response = login(client, token)
        assert response.status_code == 401 and "mpt_session" not in response.headers.get(
            "set-cookie", ""
        )
        answers.add(response.text.split('name="nonce"')[0])  # the page before the fresh nonce
    assert len(answers) == 1
    assert "That token was not accepted" in answers.pop()
    refused = [e for e in reg.audit_log() if e.action == "login" and e.outcome == "refused"]
    assert len(refused) == 5 and all(e.actor == "(unknown)" for e in refused)


def test_login_form_needs_its_nonce(client, tokens):
    client.get("/login")
    response = client.post("/login", data={"token": tokens["ben"], "nonce": "forged"})
    assert response.status_code == 403 and "CSRF" in response.text
    client.cookies.clear()
    page = client.get("/login")
    nonce = nonce_of(page.text)
    client.cookies.clear()  # the nonce cookie is gone: a cross-site post cannot have it
    response = client.post("/login", data={"token": tokens["ben"], "nonce": nonce})
    assert response.status_code == 403


def test_only_local_next_targets(client, tokens):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "evil"):
        response = login(client, tokens["ben"], target)
        assert response.headers["location"] == "/"


def test_forms_without_the_sessions_csrf_token_are_refused(as_user, scene, reg):
    client = as_user("ben")
    page = client.get(f"/requests/{scene.request_id}")
    for data in ({}, {"csrf_token": "0" * 64}, {"csrf_token": csrf_of(page.text) + "0"}):
        response = client.post(f"/requests/{scene.request_id}/approve", data=data)
        assert response.status_code == 403 and "CSRF" in response.text
    other = as_user("cy")  # another session's token does not fit either
    response = other.post(
        f"/requests/{scene.request_id}/approve", data={"csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 403 and "CSRF" in response.text
    assert reg.resolve(scene.domain) == 1 and reg.get_request(scene.request_id).status == "pending"
    # refused by the CSRF check, not by a role (PermissionDenied is a 403 too)
    response = other.post(f"/domains/{scene.domain}/rollback", data={"version": "1"})
    assert response.status_code == 403 and "CSRF" in response.text
    response = other.post("/logout", data={})
    assert response.status_code == 403 and "CSRF" in response.text


def test_logout_ends_the_session_on_the_server(as_user, scene):
    client = as_user("ben")
    cookie = client.cookies.get("mpt_session")
    page = client.get("/")
    response = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    client.cookies.clear()
    client.cookies.set("mpt_session", cookie)  # replaying the old cookie does not work
    assert client.get("/").status_code == 303


def test_an_expired_session_goes_back_to_login(reg, tokens, scene, tmp_path):
    from fastapi.testclient import TestClient

    settings = ReviewSettings(secret=SECRET, session_hours=1 / 3600)  # one second
    app = create_app(reg, settings, home=tmp_path)
    with TestClient(app, follow_redirects=False) as client:
        assert login(client, tokens["ben"]).status_code == 303
        assert client.get("/").status_code == 200
        time.sleep(2.2)  # the signed cookie's age counts whole seconds
        response = client.get(f"/requests/{scene.request_id}")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=/requests/")
        page = client.post(f"/requests/{scene.request_id}/approve", data={"csrf_token": "x"})
        assert page.headers["location"] == f"/login?next=/requests/{scene.request_id}"
    assert reg.resolve(scene.domain) == 1


def test_a_tampered_or_foreign_cookie_is_refused(as_user, reg):
    client = as_user("ben")
    cookie = client.cookies.get("mpt_session")
    client.cookies.clear()
    client.cookies.set("mpt_session", cookie[:-2] + "xx")
    assert client.get("/").status_code == 303
    secret = reg.create_session("ben", ttl=timedelta(hours=1))
    client.cookies.clear()
    client.cookies.set("mpt_session", secret)  # a live secret, but not signed by this app
    assert client.get("/").status_code == 303


def test_a_revoked_user_is_logged_out_at_once(as_user, reg):
    client = as_user("cy")
    assert client.get("/").status_code == 200
    reg.revoke_user("cy")
    assert client.get("/").status_code == 303


def test_the_login_page_says_how_to_make_the_first_user(reg, app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        page = client.get("/login")
    assert page.status_code == 200 and "No users exist yet" in page.text
    assert "mpt user add ada --role admin" in page.text


def test_without_a_configured_secret_one_is_kept_in_the_platform_home(reg, tmp_path):
    first = create_app(reg, ReviewSettings(), home=tmp_path / "home")
    path = tmp_path / "home" / "review-secret"
    assert len(path.read_text().strip()) >= 32 and oct(path.stat().st_mode)[-3:] == "600"
    second = create_app(reg, ReviewSettings(), home=tmp_path / "home")
    cookie = first.state.sessions.cookie("abc")
    assert second.state.sessions.secret(cookie) == "abc"  # restarts keep sessions valid
