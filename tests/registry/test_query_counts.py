"""Listing N versions, requests or alias moves costs the same number of SQL statements
whatever N is (rows load what their records name eagerly: no query per row), on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from registry import Policy, PromptRegistry

from .conftest import BACKBONE, make_artifact, metrics, statements

DOMAINS = ("retail", "medical")


def count(reg: PromptRegistry, call: Callable[[], list]) -> tuple[int, list]:
    with statements(reg.url) as seen:
        result = call()
    return len(seen), result


def add_versions(reg: PromptRegistry, tmp_path, start: int, stop: int) -> None:
    """Versions `start`..`stop - 1`, alternating between two domains, each on a data
    version of its own and evaluated on a shared one too, each promoted to production
    (moving it from the one before) and set as staging: every version has its own
    domain, data version, evaluations, aliases, request and history rows to load."""
    for i in range(start, stop):
        domain = DOMAINS[i % 2]
        md5, shared = f"{i:032x}", "f" * 32
        for data in (md5, shared):
            reg.record_data_version(
                domain, data, rows=4, row_counts={"test": 4}, validation_passed=True
            )
        v = reg.register_version(
            domain,
            make_artifact(tmp_path / f"art-{i}", str(i)),
            method="mpt",
            config={"tag": i},
            data_version=md5,
            backbone={**BACKBONE, "weights_sha256": f"{i:064x}"},
            metrics={"test": metrics(0.5 + i / 100, a=0.5)},
            created_by="trainer",
        )
        reg.record_evaluation(domain, v.number, shared, "test", metrics(0.5, a=0.5))
        request = reg.request_promotion(
            domain, v.number, requested_by="ana", policy=Policy("accuracy")
        )
        reg.approve(request.id, reviewer="ben", override_reason="counting queries")
        reg.set_alias(domain, "staging", v.number, actor="ana")


def test_listing_costs_the_same_queries_for_2_and_for_10_versions(reg, tmp_path):
    add_versions(reg, tmp_path, 0, 2)
    few = {
        "versions": count(reg, reg.list_versions),
        "requests": count(reg, reg.requests),
        "history": count(reg, lambda: reg.history("retail")),
    }
    add_versions(reg, tmp_path, 2, 10)
    many = {
        "versions": count(reg, reg.list_versions),
        "requests": count(reg, reg.requests),
        "history": count(reg, lambda: reg.history("retail")),
    }
    assert {k: n for k, (n, _) in many.items()} == {k: n for k, (n, _) in few.items()}

    versions = many["versions"][1]
    assert len(versions) == 10 and len(few["versions"][1]) == 2
    assert all(len(v.evaluations) == 2 for v in versions)
    current = {v.domain: v.number for v in versions}  # the last of each domain
    for v in versions:
        expected = ["production", "staging"] if v.number == current[v.domain] else []
        assert v.aliases == expected, v
    assert [r.base_version for r in many["requests"][1] if r.domain == "retail"] == [
        None,
        1,
        2,
        3,
        4,
    ]
    moves = [(h.alias, h.from_version, h.to_version) for h in many["history"][1]]
    assert moves[:4] == [
        ("production", None, 1),
        ("staging", None, 1),
        ("production", 1, 2),
        ("staging", 1, 2),
    ]
    assert len(moves) == 10
