"""The promotion flow: show a pending request, wait for a reviewer's typed decision
(Prefect pause with input), then apply it through the registry's rules."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from registry import PromptRegistry, RegistryError, open_registry


class ReviewDecision(RunInput):
    """What a reviewer answers in the Prefect UI (or with `resume_flow_run`)."""

    approve: bool
    reviewer: str
    comment: str = ""
    override_reason: str | None = None
    """Promote although the policy failed; recorded as an override."""


def request_summary(registry: PromptRegistry, request_id: int) -> str:
    r = registry.get_request(request_id)
    report = r.policy_report
    lines = [
        f"# Promotion request #{r.id}: `{r.domain}` v{r.version} -> {r.alias}",
        "",
        f"- requested by {r.requested_by} at {r.requested_at:%Y-%m-%d %H:%M}Z",
        f"- current {r.alias}: " + (f"v{r.base_version}" if r.base_version else "none"),
        f"- data version `{report.get('data_version', '-')}`, split {report.get('split', '-')}",
        f"- {report.get('policy', {}).get('metric', 'metric')}: candidate "
        f"{report.get('candidate')} vs production {report.get('production')}",
        "- policy: "
        + ("passed" if r.policy_passed else "FAILED: " + "; ".join(report.get("reasons", []))),
    ]
    return "\n".join(lines)


def apply_decision(
    registry: PromptRegistry, request_id: int, decision: ReviewDecision
) -> dict[str, Any]:
    """Apply a decision; the registry refuses what its rules forbid (self-review...)."""
    if decision.approve:
        result = registry.approve(
            request_id,
            reviewer=decision.reviewer,
            comment=decision.comment,
            override_reason=decision.override_reason,
        )
    else:
        result = registry.reject(request_id, reviewer=decision.reviewer, comment=decision.comment)
    return result.to_dict()


@flow(name="promotion", log_prints=True)
def promotion_flow(request_id: int, timeout_seconds: int = 7 * 24 * 3600) -> dict[str, Any]:
    """Wait for a reviewer's decision on a pending request and apply it."""
    logger = get_run_logger()
    registry = open_registry()
    summary = request_summary(registry, request_id)
    create_markdown_artifact(summary, key=f"promotion-request-{request_id}")
    logger.info("waiting for a reviewer's decision on request #%s", request_id)
    decision = pause_flow_run(
        wait_for_input=ReviewDecision, timeout=timeout_seconds, poll_interval=2
    )
    try:
        result = apply_decision(registry, request_id, decision)
    except RegistryError as exc:
        logger.error("decision refused: %s", exc)
        return {"id": request_id, "status": "refused", "error": str(exc)}
    logger.info("request #%s %s by %s", request_id, result["status"], decision.reviewer)
    return result
