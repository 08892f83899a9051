"""The request page's live evidence (TestClient, SQLite and PostgreSQL): what servers
reported of the candidate as production's shadow, the policy's shadow rule, the
disagreements (a thumbnail where images are kept, else the image's hash), the drift chart,
and the warnings when there is too little to go on."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from PIL import Image

from registry import (
    DriftPoint,
    MonitoringReport,
    MonitoringSettings,
    ShadowRule,
    ShadowSample,
    ShadowTally,
)
from registry.policy import wilson_interval

from .builders import POLICY, jpeg
from .conftest import csrf_of
from .test_pages import section

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def sample(n: int, thumbnail: bytes | None = None) -> ShadowSample:
    return ShadowSample(
        "retail",
        2,
        1,
        START + timedelta(minutes=n),
        f"{n + 1:064x}",
        {},
        "bag",
        0.91,
        "sneaker",
        0.55,
        thumbnail,
    )


def report(requests: int, agreed: int, samples=(), drift=()) -> MonitoringReport:
    tally = ShadowTally("retail", 2, 1, requests=requests, agreed=agreed)
    return MonitoringReport([tally], list(samples), list(drift))


def test_the_request_page_shows_live_evidence_beside_the_test_split(as_user, reg, scene):
    settings = MonitoringSettings(shadow_fraction=0.5, keep_images=True, drift_threshold=0.3)
    reg.set_monitoring("retail", settings, actor="retrain-flow")
    thumb = jpeg(Image.new("RGB", (40, 30), (200, 20, 20)))
    points = [
        DriftPoint("retail", 1, START + timedelta(minutes=5 * i), d, {"predictions": d}, 500)
        for i, d in enumerate((0.02, 0.05, 0.41))
    ]
    reg.record_monitoring(report(200, 190, [sample(0, thumb), sample(1)], points))
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    assert page.status_code == 200
    live = section(page, "live")
    low, high = wilson_interval(190, 200)
    assert "shadow requests answered by v2 200" in live
    assert "agreement with production v1 (top-1 / exact match) 95.0 % (190 of 200)" in live
    assert f"95 % interval (Wilson) {low * 100:.1f} % – {high * 100:.1f} %" in live
    assert "shadow errors · dropped under load 0 · 0" in live
    assert "The policy has no shadow rule" in live and 'id="live-warning"' not in page.text
    cards = page.text.split('id="live-disagreements"', 1)[1].split("</section>", 1)[0]
    assert cards.count("<figure") == 2 and cards.count('src="data:image/jpeg;base64,') == 1
    assert f"sha256 {1:064x}"[:19] in cards  # the newest first: the one without an image
    assert "v1: bag (0.91)" in live and "v2: sneaker (0.55)" in live
    chart = page.text.split('id="drift-chart"', 1)[1].split("</div>", 1)[0]
    assert chart.count("<circle") == 3 and "retrain 0.3" in chart
    assert "now 0.410; monitoring.drift_threshold 0.300" in live
    domain_page = as_user("vic").get("/domains/retail")  # the same chart on the domain's page
    assert "now 0.410; monitoring.drift_threshold 0.300" in section(domain_page, "drift")
    assert domain_page.text.count("<circle") == 3


def test_too_little_live_evidence_is_said_and_the_shadow_rule_is_shown(as_user, reg, scene):
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    assert "No shadow traffic: monitoring.shadow_fraction is 0" in section(page, "live")
    assert "No drift measured yet" in section(page, "live")
    assert "No drift measured yet" in section(as_user("vic").get("/domains/retail"), "drift")
    reg.set_monitoring("retail", MonitoringSettings(shadow_fraction=0.1), actor="retrain-flow")
    page = as_user("ben").get(f"/requests/{scene.request_id}")
    assert "No shadow request yet: 0.1 of production's requests" in section(page, "live")

    reg.reject(scene.request_id, reviewer="cy", comment="wants live evidence")
    rule = ShadowRule(min_requests=50, min_agreement=0.9)
    request = reg.request_promotion(
        "retail", 2, requested_by="ana", policy=replace(POLICY, shadow=rule)
    )
    reg.record_monitoring(report(10, 9))
    page = as_user("ben").get(f"/requests/{request.id}")
    live = section(page, "live")
    low, high = wilson_interval(9, 10)
    assert (
        f"Too few shadow requests to say much: with 10 the agreement with production lies "
        f"anywhere between {low:.1%} and {high:.1%}"
    ) in live
    assert "policy failed the policy's shadow rule: at least 50 requests and 90.0 %" in live
    assert "the candidate answered 10 shadow request(s)" in live
    client = as_user("ben")  # the registry refuses the approval, the page says why
    answer = client.post(
        f"/requests/{request.id}/approve",
        data={"csrf_token": csrf_of(client.get(f"/requests/{request.id}").text), "comment": ""},
    )
    assert answer.status_code == 409
    assert "does not meet its policy's shadow rule yet" in html.unescape(answer.text)
