"""Hostile input on every route of the review pages, and a registry that cannot be read:
never a 500 or a stack trace, always the site's page with what was wrong (TestClient,
SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import re

from fastapi.testclient import TestClient

from registry import PromptRegistry
from registry.store import LocalStore
from review import ReviewSettings, create_app

from ..servers import free_port
from .conftest import SECRET, csrf_of, login, nonce_of
from .test_pages import text

HUGE = "9" * 23  # 99999999999999999999999: past any integer column
FORM = {"content-type": "application/x-www-form-urlencoded"}


def post_form(client, page_path: str, path: str, **data):
    page = client.get(page_path)
    return client.post(path, data={"csrf_token": csrf_of(page.text), **data})


def test_a_rollback_to_a_version_past_any_integer_is_a_400_page(as_user, reg, scene):
    reg.approve(scene.request_id, reviewer="cy")
    client = as_user("ben")
    domain_page = f"/domains/{scene.domain}"
    for version in (HUGE, "2147483648", "0", "-1"):
        page = post_form(
            client, domain_page, f"{domain_page}/rollback", version=version, reason="x"
        )
        assert page.status_code == 400, (version, page.text[:300])
        assert "version" in text(page) and "Nothing was changed" in text(page)
    too_big = post_form(client, domain_page, f"{domain_page}/rollback", version=HUGE, reason="x")
    assert "less than or equal to 2147483647" in text(too_big)
    assert reg.resolve(scene.domain) == 2


def hostile_requests(scene, csrf: str, nonce: str, token: str) -> list[tuple[str, str, dict]]:
    """(method, path, httpx keyword arguments) a client might send to each route; forms
    carry a valid CSRF token (or login nonce), so what is checked is what follows it."""
    d, r = scene.domain, scene.request_id
    nul = {"csrf_token": csrf, "comment": "ok\x00then", "reason": "bad\x00reason"}
    return [
        ("GET", "/requests/99999999999999999999", {}),
        ("GET", "/requests/%00", {}),
        ("GET", "/requests/%ED%BF%BF", {}),
        ("GET", "/requests/%D9%A3", {}),  # an Arabic-Indic digit three
        ("GET", "/requests?status=%00", {}),
        ("GET", f"/domains/{d}?at=%00", {}),
        ("GET", f"/domains/{d}?at=9999-99-99T99:99", {}),
        ("GET", f"/domains/{d}?at={HUGE}", {}),
        ("GET", "/domains/%00", {}),
        ("GET", "/domains/%ED%BF%BF", {}),
        ("GET", f"/domains/{d}/data/%00/report/index.html", {}),
        ("GET", f"/domains/{d}/data/{scene.md5}/report/%00", {}),
        ("GET", f"/domains/{d}/data/{scene.md5}/report/..%2F..%2F..%2Fetc%2Fpasswd", {}),
        ("GET", "/login?next=%00", {}),
        ("POST", f"/requests/{r}/reject", {"data": nul}),
        ("POST", f"/requests/{r}/approve", {"data": {**nul, "override_reason": "\x00"}}),
        ("POST", f"/requests/{HUGE}/approve", {"data": {"csrf_token": csrf}}),
        ("POST", f"/domains/{d}/rollback", {"data": {"version": "1", **nul}}),
        ("POST", f"/domains/{d}/rollback", {"data": {"version": HUGE, "csrf_token": csrf}}),
        ("POST", f"/domains/{d}/rollback", {"data": {"version": "1e3", "csrf_token": csrf}}),
        ("POST", f"/domains/{d}/rollback", {"data": {"version": "", "csrf_token": csrf}}),
        ("POST", f"/domains/{d}/rollback", {"json": {"version": 1, "csrf_token": csrf}}),
        ("POST", f"/domains/{d}/rollback", {"files": {"version": ("v", b"1")}}),
        ("POST", f"/domains/{d}/rollback", {"content": b"[" * 100_000}),
        ("POST", f"/requests/{r}/approve", {"data": {"comment": "x" * 300_000}}),
        ("POST", "/login", {"data": {"token": "mpt_\x00", "nonce": nonce, "next": "/\x00"}}),
        ("POST", "/login", {"data": {"token": token, "nonce": nonce, "next": "/\x00\r\nX: y"}}),
        ("POST", "/logout", {"content": b"csrf_token=%ED%BF%BF", "headers": FORM}),
        ("POST", "/login", {"content": b"token=x&nonce=%C3%BF", "headers": FORM}),
    ]


def test_hostile_requests_on_every_route_get_the_sites_page_and_never_a_500(as_user, tokens, scene):
    client = as_user("ben")
    csrf = csrf_of(client.get(f"/requests/{scene.request_id}").text)
    for method, path, kwargs in hostile_requests(scene, csrf, "", tokens["ben"]):
        if method == "POST" and path == "/login" and "data" in kwargs:
            kwargs["data"]["nonce"] = nonce_of(client.get("/login").text)
        page = client.request(method, path, **kwargs)
        assert page.status_code < 500, (method, path, page.status_code, text(page)[:300])
        assert "Traceback" not in page.text
        if page.status_code >= 400:
            assert 'href="/static/review.css"' in page.text, (method, path)
        if page.status_code in (301, 302, 303, 307):
            assert page.headers["location"].startswith("/"), page.headers["location"]
    assert client.get("/").status_code == 200


def test_a_body_over_the_limit_is_a_413_page(as_user, scene):
    client = as_user("ben")
    page = post_form(
        client,
        f"/requests/{scene.request_id}",
        f"/requests/{scene.request_id}/approve",
        comment="x" * 300_000,
    )
    assert page.status_code == 413 and "MPT_REVIEW_MAX_BODY_KB" in text(page)
    chunked = client.post(  # no Content-Length: refused while it is read
        f"/requests/{scene.request_id}/approve",
        content=iter([b"comment=", b"x" * 300_000]),
        headers=FORM,
    )
    assert chunked.status_code == 413 and "MPT_REVIEW_MAX_BODY_KB" in text(chunked)


def test_a_text_with_a_nul_byte_is_refused_on_the_page(as_user, reg, scene):
    client = as_user("ben")
    page = post_form(
        client,
        f"/requests/{scene.request_id}",
        f"/requests/{scene.request_id}/reject",
        comment="no\x00",
    )
    assert page.status_code in (303, 400), text(page)[:300]  # PostgreSQL refuses NUL in text
    assert page.status_code == 303 or "refused a value" in text(page)


# ---------------------------------------------------------------------- login throttling
def test_failed_logins_are_throttled_with_a_429_page_that_says_when(reg, tokens, tmp_path):
    settings = ReviewSettings(secret=SECRET, login_failures=5, login_failure_window_seconds=3)
    app = create_app(reg, settings, home=tmp_path)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        wrong = [login(client, f"mpt_{i:016x}_" + "x" * 43) for i in range(30)]
        assert [r.status_code for r in wrong] == [401] * 5 + [429] * 25
        wait = int(wrong[-1].headers["retry-after"])
        assert 1 <= wait <= 3
        assert f"Too many failed logins from this address. Try again in {wait} s" in text(wrong[-1])
        assert login(client, tokens["ben"]).status_code == 429  # blocked whatever the token
    throttled = [e for e in reg.audit_log() if e.action == "login_throttled"]
    assert len(throttled) == 1 and throttled[0].detail["blocked"] == "address"
    refused = [e for e in reg.audit_log() if e.action == "login" and e.outcome == "refused"]
    assert len(refused) == 5  # blocked attempts are not checked, so not recorded one by one


def test_failed_logins_are_throttled_per_token_id(reg, tokens, tmp_path):
    settings = ReviewSettings(secret=SECRET, login_failures=3)
    app = create_app(reg, settings, home=tmp_path)
    real = tokens["ben"]
    wrong_secret = real[:21] + ("A" if real[21] != "A" else "B") + real[22:]

    def client_at(address: str) -> TestClient:
        return TestClient(app, client=(address, 50000), follow_redirects=False)

    for i in range(3):  # one wrong secret for ben's key id from each of three addresses
        with client_at(f"10.0.0.{i}") as client:
            assert login(client, wrong_secret).status_code == 401
    with client_at("10.0.0.9") as client:
        page = login(client, real)
        assert page.status_code == 429 and "from this token" in text(page)
        assert login(client, tokens["cy"]).status_code == 303  # other users are not blocked


# ---------------------------------------------------------------------- registry faults
def test_an_unreadable_sqlite_file_gives_a_503_page_naming_the_cause(tmp_path):
    from registry import upgrade

    from .builders import add_people

    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    reg = PromptRegistry(url, LocalStore(tmp_path / "artifacts"))
    tokens = add_people(reg)
    app = create_app(reg, ReviewSettings(secret=SECRET), home=tmp_path)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        assert login(client, tokens["ben"]).status_code == 303
        good = db.read_bytes()
        db.write_bytes(b"junk" * 4096)
        for path in ("/", "/login", "/requests"):
            page = client.get(path)
            assert page.status_code == 503, (path, page.status_code)
            assert (
                "The registry database cannot be read (DatabaseError: file is not a database)"
                in text(page)
            )
            assert page.headers["retry-after"] and "registry.db" not in page.text
        db.write_bytes(good)
        assert client.get("/").status_code == 200
        os.replace(db, tmp_path / "kept.db")
        page = client.get("/")
        assert page.status_code == 503 and "deleted or moved away" in text(page)
        os.replace(tmp_path / "kept.db", db)
        assert client.get("/").status_code == 200


def test_a_postgresql_server_that_does_not_answer_gives_a_503_page(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/registry"
    reg = PromptRegistry(url, LocalStore(tmp_path / "artifacts"))
    app = create_app(reg, ReviewSettings(secret=SECRET), home=tmp_path)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        page = client.get("/login")
        assert page.status_code == 503 and "Connection refused" in text(page)
        assert re.search(r"reference [0-9a-f]{8}", text(page))
