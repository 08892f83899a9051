"""`mpt domain check`: the full preflight of one domain, before any data is versioned.

Beyond the schema (checked when domain.yaml is loaded) and the data (Great Expectations),
it checks what `mpt run` would otherwise find only later: that the backbone loads offline
(family known, a cached hub id or a local path that exists), that the prompt overrides fit
the preset on that backbone, and it warns where a promotion threshold is finer than one
test example of a class can move.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from mpt_core.errors import MptError

if TYPE_CHECKING:
    import pandas as pd

    from .discovery import Domain


def check_backbone(domain: Domain) -> list[str]:
    """Problems loading the domain's backbone or fitting its prompt overrides on it."""
    from mpt_core.backbones import load_backbone
    from mpt_core.kinds import trainable_parameters

    spec, prompts = domain.config.backbone, domain.config.prompts
    where = f"{domain.root / 'domain.yaml'}: backbone"
    try:
        backbone = load_backbone(spec.family, spec.name, **spec.options)
    except (MptError, OSError, ValueError, TypeError) as exc:
        return [f"{where}: {spec.family}:{spec.name or 'default'} does not load: {exc}"]
    try:
        trainable_parameters(backbone, prompts.preset, **prompts.overrides)
    except (MptError, ValueError, TypeError) as exc:
        return [f"{domain.root / 'domain.yaml'}: prompts.overrides: {exc}"]
    return []


def policy_warnings(domain: Domain, table: pd.DataFrame | None) -> list[str]:
    """Where one test example of a group moves its accuracy by at least the policy's
    `max_class_regression`: a single changed image could then fail a promotion."""
    config = domain.config
    group = config.contract.group_field
    if table is None or group is None:
        return []
    split, column = config.data.column("split"), config.data.column(group)
    if split not in table or column not in table:
        return []
    counts = Counter(table.loc[table[split] == "test", column].dropna())
    limit = config.promotion.max_class_regression
    coarse = sorted((n, name) for name, n in counts.items() if 1 / n >= limit - 1e-9)
    if not coarse:
        return []
    n, name = coarse[0]
    return [
        f"promotion.max_class_regression is {limit:g}, but one test example of {group} "
        f"{name!r} ({n} in the test split) moves its accuracy by {1 / n:.3f}: a single "
        f"changed image can fail a promotion while the metric rises ({len(coarse)} "
        f"{group}(s) like this). Add test examples (at least {int(1 / limit) + 1} per "
        f"{group}) or raise the threshold"
    ]
