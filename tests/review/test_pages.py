"""What each page shows, from the registry's records (TestClient, SQLite and PostgreSQL)."""

from __future__ import annotations

import html
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry import Policy, PromptRegistry
from review import ReviewSettings, create_app

from .builders import CLASSES, metrics_of, regressing_request
from .conftest import SECRET, login
from .shared_scene import *  # noqa: F403 - one scene for the module (per backend)


def text(response) -> str:
    """The page's visible text, tags removed and whitespace collapsed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", response.text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def section(response, element_id: str) -> str:
    match = re.search(rf'id="{element_id}".*?(?=<section|\Z)', response.text, flags=re.S)
    assert match, f"no element #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(0))).split())


def test_overview_lists_each_domain_with_production_metric_retrain_and_pending(as_user, scene):
    page = as_user("vic").get("/")
    assert page.status_code == 200
    row = section(page, "domains")
    assert "retail" in row and "v1" in row and "accuracy 0.8167" in row
    assert "by retrain-flow" in row and f"#{scene.request_id} v2 → production" in row


def test_request_page_compares_both_versions_on_the_same_data(as_user, scene):
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    assert page.status_code == 200
    assert "production · v1" in section(page, "col-production")
    candidate = section(page, "col-candidate")
    assert "candidate · v2" in candidate and "0.8833" in candidate and "+0.0667" in candidate
    metrics = section(page, "metrics")
    assert "test, data c0ffee000000" in text(page)
    v1, v2 = metrics_of(scene.v1_rows), metrics_of(scene.v2_rows)
    assert f"macro_f1 {v1['macro_f1']:.4f} {v2['macro_f1']:.4f}" in metrics
    per_class = section(page, "per-class")
    assert "pullover 0.6667 0.8333 +0.1667" in per_class and "regression" not in per_class
    assert "policy passed" in section(page, "policy")


def test_confusion_matrices_come_from_the_stored_predictions(as_user, scene):
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    assert "v1 · 49 of 60 right" in section(page, "confusion-production")
    assert "v2 · 53 of 60 right" in section(page, "confusion-candidate")
    cells = re.findall(r'<td class="shade-\d+ diag">(\d*)</td>', page.text)
    assert [int(c) for c in cells[: len(CLASSES)]] == [9, 11, 8, 10, 11]  # v1's diagonal


def test_disagreements_show_thumbnails_truth_and_both_predictions(as_user, scene):
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    pairs = list(zip(scene.v1_rows, scene.v2_rows, strict=True))
    differ = [(a, b) for a, b in pairs if a["prediction"] != b["prediction"]]
    cards = re.findall(r'<figure class="thumb">(.*?)</figure>', page.text, flags=re.S)
    assert len(cards) == len(differ) == 18
    assert all('src="data:image/jpeg;base64,' in card for card in cards)
    a, b = differ[0]
    first = " ".join(re.sub(r"<[^>]+>", " ", cards[0]).split())
    assert a["image"] in first and f"true: {a['target']}" in html.unescape(first)
    assert f"v1: {a['prediction']}" in html.unescape(first)
    assert f"v2: {b['prediction']}" in html.unescape(first)
    assert f"Where v1 and v2 disagree ({len(differ)} of {len(pairs)} test examples)" in text(page)


def test_training_curve_and_lineage(as_user, scene):
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    curve = re.search(r'<svg class="curve".*?</svg>', page.text, flags=re.S).group(0)
    assert curve.count("<polyline") == 2 and "val_accuracy" in curve and "epoch" in curve
    lineage = section(page, "lineage")
    for expected in (
        "method coop mpt",
        "shipped:tiny",
        "b" * 64,
        "flow-run-retail-v1 flow-run-retail-v2",
        "1" * 40,
        "code version 0.1.0 0.1.0",
        f"{scene.md5} · 180 rows",
        "validation passed",
        "retail: passed: 14 checks on 180 rows",
        "preset coop mpt",
        "tuning.epochs 10 12",
    ):
        assert expected in lineage, expected
    link = f'href="/domains/retail/data/{scene.md5}/report/data_docs/index.html"'
    assert link in page.text


def test_regressions_are_marked_against_the_stored_policy(as_user, reg, scene, tmp_path):
    failing = regressing_request(reg, tmp_path, scene, by="cy")
    page = as_user("ben").get(f"/requests/{failing}")
    rows = re.findall(r'<tr class="regression">(.*?)</tr>', page.text, flags=re.S)
    assert len(rows) == 1 and ">bag<" in rows[0]
    assert "policy failed" in text(page)
    assert "1 class(es) regress by more than 0.0500; worst: 'bag' -0.1667" in section(
        page, "policy"
    )
    assert 'id="override-form"' in page.text and 'id="approve-form"' not in page.text


def test_a_first_candidate_shows_where_it_is_wrong(as_user, reg, tokens, tmp_path):
    reg.record_data_version(
        "medical", "a" * 32, rows=3, row_counts={"test": 3}, validation_passed=True
    )
    from .builders import BACKBONE, artifact

    rows = [
        {"image": "x/1.png", "question": "q?", "target": "yes", "prediction": "no", "score": 0.6},
        {"image": "x/2.png", "question": "q?", "target": "no", "prediction": "no", "score": 0.8},
    ]
    reg.register_version(
        "medical",
        artifact(tmp_path / "m1", "m1"),
        method="mpt",
        config={"preset": "mpt"},
        data_version="a" * 32,
        backbone=BACKBONE,
        metrics={"test": {"accuracy": 0.5, "per_question_accuracy": {"q?": 0.5}}},
        created_by="ana",
    )
    reg.record_predictions("medical", 1, "a" * 32, "test", rows, target_field="answer")
    request = reg.request_promotion("medical", 1, requested_by="ana", policy=Policy("accuracy"))
    page = as_user("ben").get(f"/requests/{request.id}")
    assert page.status_code == 200
    assert "No production version yet: this is the first." in text(page)
    assert "Where the candidate is wrong (1 of 2 test examples)" in text(page)
    assert "no thumbnail" in section(page, "examples") and "q?" in section(page, "examples")
    assert "v1: q? · 1 of 2 right" in section(page, "confusion-candidate")
    assert "Per question" in text(page)


def test_a_version_without_stored_predictions_still_has_a_page(as_user, reg, tokens, tmp_path):
    from .builders import BACKBONE, artifact

    reg.record_data_version("plain", "e" * 32, rows=1, row_counts={}, validation_passed=True)
    reg.register_version(
        "plain",
        artifact(tmp_path / "p1", "p1"),
        method="mpt",
        config={},
        data_version="e" * 32,
        backbone=BACKBONE,
        metrics={"test": {"accuracy": 0.7}},
        created_by="ana",
    )
    request = reg.request_promotion("plain", 1, requested_by="ana", policy=Policy("accuracy"))
    page = as_user("vic").get(f"/requests/{request.id}")
    assert page.status_code == 200
    assert "No per-example predictions are stored for this candidate" in text(page)
    assert "No per-epoch history was stored" in text(page)


def test_versions_are_judged_by_the_primary_metric_stored_with_them(as_user, reg, tmp_path):
    """The domain page's metric column: the primary metric a retrain stored with the latest
    version, else (versions from before it was stored) its first metric."""
    from .builders import BACKBONE, artifact

    for name, primary in (("judged", "macro_f1"), ("legacy", None)):
        reg.record_data_version(name, "e" * 32, rows=1, row_counts={}, validation_passed=True)
        reg.register_version(
            name,
            artifact(tmp_path / name, name),
            method="mpt",
            config={},
            data_version="e" * 32,
            backbone=BACKBONE,
            metrics={"test": {"accuracy": 0.7, "macro_f1": 0.6}},
            created_by="ana",
            primary_metric=primary,
        )
    judged = section(as_user("vic").get("/domains/judged"), "versions")
    assert "macro_f1 (test)" in judged and "0.6000" in judged
    assert "accuracy (test)" in section(as_user("vic").get("/domains/legacy"), "versions")


def test_viewers_see_no_decision_buttons_and_requesters_are_told_why(as_user, scene):
    viewer = as_user("vic").get(f"/requests/{scene.request_id}")
    assert 'class="decide"' not in viewer.text and "Decide ↓" not in viewer.text
    domain = as_user("vic").get(f"/domains/{scene.domain}")
    assert 'id="rollback-form"' not in domain.text
    requester = as_user("ana").get(f"/requests/{scene.request_id}")
    assert 'id="approve-form"' in requester.text
    assert "Deciding needs the reviewer role; you are a requester" in text(requester)


def test_domain_page_history_production_at_a_time_and_versions(as_user, reg, scene):
    client = as_user("ben")
    page = client.get(f"/domains/{scene.domain}")
    history = section(page, "history")
    assert "promotion production: none → v1 by ben · request #1" in history
    assert "“first production”" in history
    first_move = reg.history(scene.domain)[0].at
    before = client.get(f"/domains/{scene.domain}?at=2000-01-01T00:00")
    assert "production was not set" in section(before, "at-time")
    after = client.get(f"/domains/{scene.domain}", params={"at": first_move.isoformat()})
    assert "production was v1" in section(after, "at-time")
    bad = client.get(f"/domains/{scene.domain}?at=yesterday")
    assert bad.status_code == 400 and "'yesterday' is not a time" in text(bad)
    versions = section(page, "versions")
    assert "v2 mpt candidate" in versions and "v1 coop candidate production 0.8167" in versions


def test_request_lists_filter_by_status(as_user, scene):
    client = as_user("vic")
    pending = section(client.get("/requests"), "requests")
    assert f"#{scene.request_id}" in pending and "#1 " not in pending + " "
    approved = section(client.get("/requests?status=approved"), "requests")
    assert "#1" in approved and "ben" in approved
    assert f"#{scene.request_id}" in section(client.get("/requests?status=all"), "requests")


@pytest.mark.parametrize(
    "path",
    ["/requests/999", "/requests/abc", "/requests/-1", "/domains/nowhere", "/no/such/page"],
)
def test_unknown_things_get_a_404_page(as_user, scene, path):
    page = as_user("vic").get(path)
    assert page.status_code == 404
    assert "404 · Not found" in text(page) and "Traceback" not in page.text
    assert 'href="/static/review.css"' in page.text  # the site's page, not a bare error


def test_no_stack_trace_reaches_a_page(reg, tokens, tmp_path, caplog):
    class Broken(PromptRegistry):
        def list_versions(self, domain=None):
            raise ZeroDivisionError("secret internals")

    broken = Broken(reg.url, reg.store)
    app = create_app(broken, ReviewSettings(secret=SECRET), home=tmp_path)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        login(client, tokens["ben"])
        with caplog.at_level(logging.ERROR, logger="review"):
            page = client.get("/")
    assert page.status_code == 500
    assert "secret internals" not in page.text and "Traceback" not in page.text
    ref = re.search(r"reference ([0-9a-f]{8})", page.text).group(1)
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info[0] is ZeroDivisionError  # the trace is in the log


def test_security_headers_and_shipped_assets(as_user, scene):
    client = as_user("vic")
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    for asset in ("/static/review.css", "/static/review.js"):
        assert client.get(asset).status_code == 200
    templates = Path(__file__).resolve().parents[2] / "review" / "templates"
    shipped = "".join(p.read_text() for p in templates.glob("*.html"))
    assert "https://" not in shipped and "cdn" not in shipped.lower()  # nothing from the net


def test_pages_are_served_without_torch():
    code = (
        "import sys; import review.app, review.views, review.routes.requests; "
        "assert 'torch' not in sys.modules and 'flows' not in sys.modules, "
        "[m for m in sys.modules if m.startswith(('torch', 'flows'))]"
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
