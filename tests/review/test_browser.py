"""The review pages in a real browser: headless Chromium (Selenium) against `mpt review` on
uvicorn, on SQLite and on PostgreSQL. Screenshots go to $MPT_SCREENSHOT_DIR if set
(`make screenshots` sets it to docs/), else to the test's temp dir."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import (
    DriftPoint,
    MonitoringReport,
    MonitoringSettings,
    PromptRegistry,
    ShadowEvidence,
    ShadowSample,
    ShadowTally,
)
from registry.store import LocalStore

from .builders import CLASSES, PER_CLASS, add_people, build, jpeg
from .conftest import database
from .server import chromium, full_page_png, running_review

pytestmark = pytest.mark.slow  # a browser and a server: about 20 s per backend

SHOTS_ENV = "MPT_SCREENSHOT_DIR"


def fashion_images():
    """Real Fashion-MNIST images for the thumbnails (Debian's dataset-fashion-mnist)."""
    from mpt_core.samples import fashion_mnist

    return [e.image for e in fashion_mnist("test", PER_CLASS, CLASSES, seed=3)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """A registry with users, `mpt review` serving it, and its URL."""
    root = tmp_path_factory.mktemp(f"review-{request.param}")
    with database(request, request.param, root) as url:
        reg = PromptRegistry(url, LocalStore(root / "artifacts"))
        tokens = add_people(reg)
        env = {
            "MPT_HOME": str(root / "home"),
            "MPT_DATABASE_URL": url,
            "MPT_ARTIFACT_STORE": str(root / "artifacts"),
            "MPT_REVIEW_SECRET": "browser-test-" + "k" * 40,
        }
        with running_review(env, root) as server:
            yield {
                "url": server.url,
                "reg": reg,
                "tokens": tokens,
                "root": root,
                "backend": request.param,
            }


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium") / "profile") as driver:
        yield driver


@pytest.fixture
def shots(tmp_path, site):
    where = os.environ.get(SHOTS_ENV)
    if where and site["backend"] == "sqlite":  # one set of pictures is enough
        return Path(where)
    return tmp_path


def log_in(driver, site, who: str, path: str):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(site["url"] + path)
    assert "/login" in driver.current_url  # no session: sent to the login page first
    driver.find_element(By.ID, "token").send_keys(site["tokens"][who])
    driver.find_element(By.ID, "login").click()
    wait_for(driver, "whoami")
    assert driver.find_element(By.ID, "whoami").text == who
    assert driver.current_url == site["url"] + path  # and back where it wanted to go


def wait_for(driver, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, element_id)))


def live_traffic(reg: PromptRegistry, domain: str, images) -> ShadowEvidence:
    """What a server would have reported of v2 shadowing v1: 200 requests, 190 agreeing,
    thumbnails of a few disagreements, and a drift that rises over two hours."""
    settings = MonitoringSettings(shadow_fraction=0.2, keep_images=True, drift_threshold=0.25)
    reg.set_monitoring(domain, settings, actor="retrain-flow")
    start = datetime.now(UTC) - timedelta(hours=2)
    samples = [
        ShadowSample(
            domain,
            2,
            1,
            start + timedelta(minutes=i),
            f"{i + 1:064x}",
            {},
            "bag",
            0.8,
            "sneaker",
            0.6,
            jpeg(image),
        )
        for i, image in enumerate(images[:4])
    ]
    drift = [
        DriftPoint(domain, 1, start + timedelta(minutes=5 * i), 0.02 + 0.01 * i, {}, 1000)
        for i in range(24)
    ]
    tally = ShadowTally(domain, 2, 1, requests=200, agreed=190)
    reg.record_monitoring(MonitoringReport([tally], samples, drift))
    return reg.shadow_evidence(domain, 2, 1)


def test_a_reviewer_approves_and_the_history_shows_the_move(browser, site, shots):
    from selenium.webdriver.common.by import By

    images = fashion_images()
    scene = build(site["reg"], site["root"], "retail", images=images)
    live = live_traffic(site["reg"], "retail", images)
    log_in(browser, site, "ben", "/")
    assert "retail" in browser.find_element(By.ID, "domains").text

    browser.get(f"{site['url']}/requests/{scene.request_id}")
    production = browser.find_element(By.ID, "col-production").text
    candidate = browser.find_element(By.ID, "col-candidate").text
    assert "v1" in production and "accuracy 0.8167" in production
    assert "v2" in candidate and "accuracy 0.8833" in candidate and "+0.0667" in candidate
    metrics = browser.find_element(By.ID, "metrics").text
    assert "production v1" in metrics and "candidate v2" in metrics
    cards = browser.find_elements(By.CSS_SELECTOR, "#disagreements figure")
    images = browser.find_elements(By.CSS_SELECTOR, "#disagreements img")
    disagree = sum(
        a["prediction"] != b["prediction"]
        for a, b in zip(scene.v1_rows, scene.v2_rows, strict=True)
    )
    assert len(cards) == len(images) == disagree > 0
    assert all(img.get_property("naturalWidth") > 0 for img in images)  # decoded JPEGs
    first = cards[0].text
    assert "true:" in first and "v1:" in first and "v2:" in first
    assert browser.find_elements(By.CSS_SELECTOR, "#curve svg polyline")
    shadow = browser.find_element(By.ID, "live-shadow").text
    assert f"{live.requests}" in shadow and "95.0 % (190 of 200)" in shadow
    live_images = browser.find_elements(By.CSS_SELECTOR, "#live-disagreements img")
    assert len(live_images) == len(live.samples)
    assert all(img.get_property("naturalWidth") > 0 for img in live_images)
    assert browser.find_elements(By.CSS_SELECTOR, "#drift-chart svg polyline")
    full_page_png(browser, shots / "review-request.png")

    browser.find_element(By.ID, "approve-comment").send_keys("better on pullover, no regression")
    browser.find_element(By.ID, "approve").click()
    wait_for(browser, "versions")
    assert "Approved" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text
    assert "approved by ben" in browser.find_element(By.CSS_SELECTOR, ".decided").text.lower()
    assert not browser.find_elements(By.ID, "approve")  # decided: no more buttons

    browser.get(f"{site['url']}/domains/retail")
    latest = browser.find_element(By.CSS_SELECTOR, "#history li").text
    assert "promotion" in latest and "v1 → v2" in latest and "by ben" in latest
    assert f"#{scene.request_id}" in latest
    assert site["reg"].resolve("retail") == 2
    full_page_png(browser, shots / "review-history.png")


def test_a_requester_trying_to_approve_their_own_request_sees_the_refusal(browser, site, shots):
    from selenium.webdriver.common.by import By

    scene = build(site["reg"], site["root"], "shop", requester="ana")
    log_in(browser, site, "ana", f"/requests/{scene.request_id}")
    assert "You opened this request" in browser.find_element(By.ID, "own-request").text
    browser.find_element(By.ID, "approve").click()
    refusal = wait_for(browser, "refusal").text
    assert f"ana requested #{scene.request_id} and cannot review it" in refusal
    full_page_png(browser, shots / "review-refused.png")
    assert site["reg"].resolve("shop") == 1  # nothing moved
    assert site["reg"].get_request(scene.request_id).status == "pending"


def test_a_viewer_sees_everything_but_no_decision_buttons(browser, site, shots):
    from selenium.webdriver.common.by import By

    scene = build(site["reg"], site["root"], "lab")
    log_in(browser, site, "vic", "/")
    overview = browser.find_element(By.ID, "domains").text
    assert "lab" in overview and f"#{scene.request_id}" in overview
    full_page_png(browser, shots / "review-domains.png")
    browser.get(f"{site['url']}/requests/{scene.request_id}")
    assert browser.find_element(By.ID, "col-production").text
    assert browser.find_elements(By.CSS_SELECTOR, "#disagreements figure")
    assert not browser.find_elements(By.CSS_SELECTOR, "form.decide")
    assert not browser.find_elements(By.CSS_SELECTOR, "#approve, #reject, #override")
    browser.get(f"{site['url']}/domains/lab")
    assert browser.find_element(By.ID, "history").text
    assert not browser.find_elements(By.ID, "rollback-form")
    browser.find_element(By.CSS_SELECTOR, "button.link").click()  # log out
    wait_for(browser, "token")
    browser.get(f"{site['url']}/requests/{scene.request_id}")
    assert "/login" in browser.current_url  # the session is gone
