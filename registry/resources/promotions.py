"""Promotion requests: pending -> approved | rejected | superseded, and that is final.

A request stores its policy report, computed when it is opened (candidate vs what the
alias points at then, on the candidate's data version). A reviewer who is not the
requester decides; approval moves the alias by compare-and-swap, and only if the policy
passed or the reviewer recorded an override reason, and only if the alias still points
where it did when the request was opened (otherwise its report is stale). A new request
for the same version and alias supersedes such a stale one (recorded on the stale request,
which names its successor, and in the audit log), so a stale request is never a dead end.

Audited actions take the audit `Detail` to fill in as they learn what they act on.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from .. import models as m
from ..constants import PRODUCTION
from ..errors import ConflictError, NotFoundError, RuleViolation
from ..policy import Policy, check_shadow, evaluate_policy
from . import aliases, domains, users, versions
from . import audit as log
from .audit import Detail

RECORD = (joinedload(m.PromotionRequest.version), joinedload(m.PromotionRequest.base_version))
"""What `PromotionRequest.to_record` reads besides its domain, loaded with the rows."""


def _command(domain: str, number: int, alias: str) -> str:
    """The CLI command that opens a request for `domain` v`number` -> `alias`."""
    to = "" if alias == PRODUCTION else f" --alias {alias}"
    return f"mpt promote request {domain} {number}{to}"


def _where(s: Session, version_id: int | None) -> str:
    number = versions.number_of(s, version_id)
    return "unset" if number is None else f"v{number}"


def open_request(
    s: Session,
    d: m.Domain,
    v: m.PromptVersion,
    *,
    requested_by: str,
    policy: Policy,
    alias: str = PRODUCTION,
    split: str = "test",
) -> tuple[m.PromotionRequest, list[int]]:
    """A pending request to point `alias` at candidate `v`, with its policy report, and
    the ids of the requests it superseded: a pending request for the same version and
    alias whose baseline moved since it was opened (its report is stale, so it could
    never be approved) is replaced by this one, recorded as superseded by it."""
    domain, number = d.name, v.number
    if v.status != "candidate":
        raise RuleViolation(f"{domain} v{number} is {v.status}; only candidates can be promoted")
    current = aliases.find(s, d, alias)
    now_id = current.version_id if current else None
    if now_id == v.id:
        raise RuleViolation(f"{domain}:{alias} already points at v{number}")
    pending = s.scalar(
        select(m.PromotionRequest).where(
            m.PromotionRequest.version_id == v.id,
            m.PromotionRequest.alias == alias,
            m.PromotionRequest.status == "pending",
        )
    )
    if pending is not None and pending.base_version_id == now_id:
        raise RuleViolation(
            f"request #{pending.id} for {domain} v{number} -> {alias} is already pending and "
            f"still current ({alias} is {_where(s, now_id)} as when it was opened): decide it "
            f"(`mpt promote approve {pending.id}` or `mpt promote reject {pending.id} "
            "--comment WHY`) instead of opening another"
        )
    data = v.data_version
    cand = versions.metrics_on(s, v.id, data, split)
    prod = None if current is None else versions.metrics_on(s, current.version_id, data, split)
    if current is not None and prod is None:
        prod = {}  # evaluated nowhere on this data: the policy says so
    report = evaluate_policy(policy, cand or {}, prod, data_version=data.md5, split=split)
    if current is not None:
        report["production_version"] = versions.number_of(s, current.version_id)
    if prod == {}:  # say how to evaluate it there
        fix = (
            f": `mpt registry evaluate {domain} {report['production_version']} "
            f"--data-version {data.md5}`, then request again"
        )
        report["reasons"] = [
            reason + fix if reason.startswith("production has no") else reason
            for reason in report["reasons"]
        ]
    r = m.PromotionRequest(
        domain=d,
        version=v,
        alias=alias,
        base_version_id=now_id,
        requested_by=requested_by,
        policy_passed=report["passed"],
        policy_report=report,
    )
    s.add(r)
    s.flush()
    superseded = []
    if pending is not None:
        _supersede(s, pending, r, now_id)
        superseded.append(pending.id)
    return r, superseded


def _supersede(
    s: Session, old: m.PromotionRequest, new: m.PromotionRequest, now_id: int | None
) -> None:
    """Pending `old` -> superseded by `new`, only if still pending (like a decision)."""
    why = (
        f"superseded by request #{new.id}: {old.alias} moved from "
        f"{_where(s, old.base_version_id)} to {_where(s, now_id)} since it was opened"
    )
    done = s.execute(
        update(m.PromotionRequest)
        .where(m.PromotionRequest.id == old.id, m.PromotionRequest.status == "pending")
        .values(status="superseded", superseded_by_id=new.id, comment=why, decided_at=m.utcnow())
    ).rowcount
    if done != 1:
        raise ConflictError(f"request #{old.id} was decided concurrently; nothing was changed")
    s.flush()
    s.refresh(old)


def request(
    s: Session,
    domain: str,
    number: int,
    *,
    requested_by: str,
    policy: Policy,
    alias: str,
    split: str,
    audit: Detail,
) -> m.PromotionRequest:
    """Open a request for version `number` of `domain` (needs the requester role)."""
    users.authorize(s, requested_by, "requester", "requesting a promotion")
    d = domains.read(s, domain)
    r, superseded = open_request(
        s,
        d,
        versions.read(s, d, number),
        requested_by=requested_by,
        policy=policy,
        alias=alias,
        split=split,
    )
    audit.update(request_id=r.id, policy_passed=r.policy_passed)
    record_superseded(s, r, superseded, requested_by)
    if superseded:
        audit.update(superseded=superseded)
    return r


def record_superseded(s: Session, r: m.PromotionRequest, superseded: list[int], actor: str) -> None:
    """One audit record per request `r` superseded, naming the request that replaced it."""
    for old in superseded:
        what = {"domain": r.domain.name, "alias": r.alias, "version": r.version.number}
        log.append(s, "supersede", actor, "ok", None, {**what, "request_id": old, "by": r.id})


def read(s: Session, request_id: int) -> m.PromotionRequest:
    r = s.get(m.PromotionRequest, request_id)
    if r is None:
        raise NotFoundError(f"promotion request #{request_id} does not exist")
    return r


def read_all(
    s: Session, domain: str | None = None, status: str | None = None
) -> list[m.PromotionRequest]:
    """Requests (of `domain`, with `status`), oldest first, ready for `to_record`."""
    query = (
        select(m.PromotionRequest)
        .join(m.PromotionRequest.domain)
        .options(contains_eager(m.PromotionRequest.domain), *RECORD)
    )
    if domain:
        query = query.where(m.Domain.name == domain)
    if status:
        query = query.where(m.PromotionRequest.status == status)
    return list(s.scalars(query.order_by(m.PromotionRequest.id)))


def first_of(s: Session, v: m.PromptVersion) -> m.PromotionRequest | None:
    """The first request opened for `v`, if any."""
    return s.scalar(
        select(m.PromotionRequest)
        .where(m.PromotionRequest.version_id == v.id)
        .order_by(m.PromotionRequest.id)
        .limit(1)
    )


def shadow_check(s: Session, r: m.PromotionRequest) -> dict | None:
    """The policy's shadow rule checked now, on what the candidate answered of the
    baseline's traffic as its shadow (None when the policy has no shadow rule). A first
    promotion has no production traffic to shadow: the rule has nothing to ask."""
    rule = (r.policy_report.get("policy") or {}).get("shadow")
    if not rule:
        return None
    if r.base_version_id is None:
        report = check_shadow(None, 0, 0)
        report.update(rule=rule, note="no production version yet: nothing to shadow")
        return report
    stats = s.scalar(
        select(m.ShadowStats).where(
            m.ShadowStats.version_id == r.version_id,
            m.ShadowStats.production_version_id == r.base_version_id,
        )
    )
    requests, agreed = (stats.requests, stats.agreed) if stats else (0, 0)
    return check_shadow(rule, requests, agreed)


def _pending(s: Session, request_id: int, reviewer: str) -> m.PromotionRequest:
    r = read(s, request_id)
    if r.status == "superseded":
        raise RuleViolation(
            f"request #{request_id} was superseded by request #{r.superseded_by_id} at "
            f"{r.decided_at:%Y-%m-%d %H:%M}Z ({r.comment}); decide #{r.superseded_by_id} instead"
        )
    if r.status != "pending":
        raise RuleViolation(
            f"request #{request_id} was already {r.status} by {r.reviewer} at "
            f"{r.decided_at:%Y-%m-%d %H:%M}Z; decisions are final, open a new request"
        )
    if reviewer == r.requested_by:
        raise RuleViolation(
            f"{reviewer} requested #{request_id} and cannot review it; another reviewer must decide"
        )
    return r


def _decide(s: Session, r: m.PromotionRequest, status: str, reviewer: str, comment: str) -> None:
    """Pending -> `status`, only if still pending: two reviewers cannot both decide."""
    decided = s.execute(
        update(m.PromotionRequest)
        .where(m.PromotionRequest.id == r.id, m.PromotionRequest.status == "pending")
        .values(status=status, reviewer=reviewer, comment=comment, decided_at=m.utcnow())
    ).rowcount
    if decided != 1:
        raise ConflictError(f"request #{r.id} was decided concurrently; nothing was changed")
    s.flush()
    s.refresh(r)


def approve(
    s: Session,
    request_id: int,
    *,
    reviewer: str,
    comment: str,
    override_reason: str | None,
    audit: Detail,
) -> m.PromotionRequest:
    """Approve and move the alias atomically. Refused if the policy failed (unless
    `override_reason`, recorded as an override) or the request is superseded."""
    r = _pending(s, request_id, reviewer)
    d = r.domain
    audit.update(domain=d.name, alias=r.alias, override_reason=override_reason)
    users.authorize(s, reviewer, "reviewer", f"approving request #{r.id}")
    v = r.version
    current = aliases.find(s, d, r.alias)
    now_id = current.version_id if current else None
    if now_id != r.base_version_id:
        was, now = versions.number_of(s, r.base_version_id), versions.number_of(s, now_id)
        raise RuleViolation(
            f"request #{r.id} is superseded: {d.name}:{r.alias} "
            f"{'was unset' if was is None else f'pointed at v{was}'} when it was opened "
            f"and now points at {'nothing' if now is None else f'v{now}'}, so its policy "
            f"report is stale; nothing was changed. Open a new request for v{v.number} "
            f"(`{_command(d.name, v.number, r.alias)}`): it replaces #{r.id}, which is then "
            "recorded as superseded"
        )
    shadow = shadow_check(s, r)
    if not r.policy_passed and not override_reason:
        reasons = "; ".join(r.policy_report.get("reasons", [])) or "policy failed"
        raise RuleViolation(
            f"request #{r.id} failed its promotion policy ({reasons}); approve with an "
            "override reason (--override REASON) to promote anyway, recorded as an override"
        )
    if shadow is not None and not shadow["passed"] and not override_reason:
        raise RuleViolation(
            f"request #{r.id} does not meet its policy's shadow rule yet "
            f"({'; '.join(shadow['reasons'])}); approve with an override reason "
            "(--override REASON) to promote anyway, recorded as an override"
        )
    passed = r.policy_passed and (shadow is None or shadow["passed"])
    kind = "override" if not passed else "promotion"
    audit.update(version=v.number, kind=kind, from_version=versions.number_of(s, now_id))
    if shadow is not None:  # the live evidence the decision was taken on, kept with it
        shadow["checked_at"] = m.utcnow().isoformat()
        r.policy_report = {**r.policy_report, "shadow": shadow}
        audit.update(shadow_requests=shadow["requests"], shadow_agreement=shadow["agreement"])
    reason = override_reason or comment or f"approved request #{r.id}"
    _decide(s, r, "approved", reviewer, comment or (override_reason or ""))
    aliases.move(
        s,
        d,
        r.alias,
        v,
        expected=now_id,
        kind=kind,
        actor=reviewer,
        reason=reason,
        request_id=r.id,
    )
    return r


def reject(
    s: Session, request_id: int, *, reviewer: str, comment: str, audit: Detail
) -> m.PromotionRequest:
    """Reject, with a comment saying why; the version stays a candidate."""
    if not comment.strip():
        raise RuleViolation("a rejection needs a comment saying why")
    r = _pending(s, request_id, reviewer)
    audit.update(domain=r.domain.name, alias=r.alias, version=r.version.number)
    users.authorize(s, reviewer, "reviewer", f"rejecting request #{r.id}")
    _decide(s, r, "rejected", reviewer, comment)
    return r
