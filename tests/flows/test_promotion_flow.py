"""The promotion flow pauses for a typed reviewer decision, then applies it through the
registry's rules."""

from __future__ import annotations

import threading
import time

import pytest

from registry import Policy, PromptRegistry, RegistrySettings, open_registry

from ..registry.conftest import BACKBONE, make_artifact, metrics

pytestmark = pytest.mark.slow  # a Prefect test server


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pending_request(tmp_path) -> int:
    reg: PromptRegistry = open_registry()
    reg.record_data_version("shop", "c" * 32, rows=1, row_counts={}, validation_passed=True)
    reg.register_version(
        "shop",
        make_artifact(tmp_path / "a", "a"),
        method="mpt",
        config={},
        data_version="c" * 32,
        backbone=BACKBONE,
        metrics={"test": metrics(0.9, a=0.9)},
        created_by="trainer",
    )
    return reg.request_promotion("shop", 1, requested_by="ana", policy=Policy("accuracy")).id


def run_and_answer(request_id: int, answer: dict) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.flow_runs import resume_flow_run

    from flows.promotion import promotion_flow

    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.update(promotion_flow(request_id, timeout_seconds=120))
    )
    thread.start()
    paused = None
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while paused is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
                )
            )
            paused = runs[0] if runs else None
            time.sleep(0.5)
    assert paused is not None, "the promotion flow never paused for input"
    resume_flow_run(paused.id, run_input=answer)
    thread.join(timeout=90)
    return out


def test_waits_for_the_reviewer_and_applies_the_approval(harness, tmp_path):
    request_id = pending_request(tmp_path)
    result = run_and_answer(request_id, {"approve": True, "reviewer": "ben", "comment": "ship it"})
    assert result["status"] == "approved" and result["reviewer"] == "ben"
    assert PromptRegistry.from_settings(RegistrySettings()).resolve("shop") == 1


def test_a_self_review_is_refused_and_nothing_moves(harness, tmp_path):
    request_id = pending_request(tmp_path)
    result = run_and_answer(request_id, {"approve": True, "reviewer": "ana"})
    assert result["status"] == "refused" and "cannot review it" in result["error"]
    reg = PromptRegistry.from_settings(RegistrySettings())
    assert reg.resolve("shop") is None and reg.get_request(request_id).status == "pending"
