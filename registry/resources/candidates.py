"""What a retrain registers, composed from the resource functions so that it is one
write: the candidate version (lineage, metrics), production's metrics on the same data
version, the promotion request checked against the domain's policy, the review evidence
(both versions' per-example predictions, thumbnails) and the audit records (registration,
request). A failure anywhere leaves none of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from .. import models as m
from ..policy import Policy
from ..records import ReviewEvidence
from . import audit as log
from . import data_versions, domains, evidence, promotions, users, versions
from .audit import Detail

if TYPE_CHECKING:
    from ..store import StoredArtifact


def register(
    s: Session,
    domain: str,
    stored: StoredArtifact,
    *,
    method: str,
    config: dict[str, Any],
    data_version: str,
    backbone: dict[str, str],
    metrics: dict[str, dict[str, Any]],
    policy: Policy,
    production: tuple[int, dict[str, Any]] | None,
    created_by: str,
    flow_run_id: str | None,
    code_version: str | None,
    split: str,
    training_history: list[dict[str, Any]] | None,
    search: dict[str, Any] | None,
    primary_metric: str | None,
    review: ReviewEvidence | None,
    audit: Detail,
    trigger: dict[str, Any] | None = None,
) -> tuple[m.PromptVersion, m.PromotionRequest | None]:
    """The candidate and its request (`production` = (its number, its `split` metrics)).
    Idempotent on retry: the same flow run, domain and data version give back the version
    (and request) registered the first time, writing nothing but the audit record of the
    retry. `audit`: the registration's audit detail, filled in here; the request gets an
    audit record of its own."""
    users.authorize(s, created_by, "requester", "registering a candidate")
    d = domains.ensure(s, domain)
    data = data_versions.read(s, d, data_version)
    if flow_run_id:
        earlier = versions.of_flow_run(s, d, data, flow_run_id)
        if earlier is not None:
            audit.update(version=earlier.number, retry=True)
            return earlier, promotions.first_of(s, earlier)
    v = versions.insert(
        s,
        d,
        stored,
        method=method,
        config=config,
        data=data,
        backbone=backbone,
        metrics=metrics,
        created_by=created_by,
        flow_run_id=flow_run_id,
        code_version=code_version,
        training_history=training_history,
        search=search,
        primary_metric=primary_metric,
        trigger=trigger,
    )
    prod = None
    if production is not None:
        number, prod_metrics = production
        prod = versions.read(s, d, number)
        versions.record_evaluation(s, prod, data, split, prod_metrics)
    audit.update(version=v.number, data_version=data.md5, artifact_sha256=stored.sha256)
    if prod is not None:
        audit.update(evaluated=f"v{prod.number} on {split} of {data.md5}")
    r, superseded = promotions.open_request(
        s, d, v, requested_by=created_by, policy=policy, split=split
    )
    if review is not None:
        evidence.record_review(s, review, data, v, prod)
    what = {"domain": d.name, "alias": r.alias, "version": v.number, "request_id": r.id}
    log.append(s, "request", created_by, "ok", None, {**what, "policy_passed": r.policy_passed})
    promotions.record_superseded(s, r, superseded, created_by)
    return v, r
