"""`mpt domain new`: a commented domain.yaml, a README and an empty data layout; the same
files, with the task's declaration found in the data, for `mpt domain import`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mpt_core import FAMILIES, PRESETS, TASKS

from .discovery import CONFIG_FILE, DATA_DIR
from .schema import NAME_RE, DataLayout, DomainConfigError, load_domain_config

_YAML = """\
# Domain `{name}`: everything the platform needs to tune, validate and promote its prompts.
# Only `task` and the task's fields are required; everything else shows its default.
task: {task}
description: ""
{task_fields}
# Data: domains/{name}/data/ holds images/ and the metadata table (paths relative to data/).
data:
  metadata: metadata.csv   # columns: {columns}; split is train, val or test
  image_column: image
  split_column: split
{group}

# The frozen backbone and the prompts tuned on it.
backbone:
  family: {family}          # {families}
prompts:
  preset: mpt              # {presets}
  overrides: {{}}            # PromptConfig fields, e.g. {{text_tokens: 8}}
tuning:
  epochs: 15
  batch_size: 16
  lr: 0.002
  seed: 0
  # The prompts a fit keeps: best = the epoch best on validation (early stopping after
  # `patience` epochs without gain); swa = the average of the last half of the epochs
  # (the whole budget runs); refit = the epoch count chosen on 3 folds of train + val
  # (every image validates once), then one fit on all of them (4x the time).
  final: best
  # Hyper-parameter search on Ray Tune, chosen on validation only (k folds of train + val
  # when val is small); every trial goes into the version's lineage. trials: 0 = off.
  # Without `space`, the task's default space (lr, epochs, depth, ...) is searched.
  search: {{trials: 4}}

# Data checks run before every training run (Great Expectations).
validation:
  min_per_class: {{train: 2, val: 1, test: 1}}   # per label / answer and split
  min_per_split: 1
  caption_length: [3, 500]
  images: {{min_side: 8, max_side: 8192, max_pixels: 40000000}}
  # Leakage between splits: the same image bytes or a group (data.group_column) in two
  # splits fail; images whose 64-bit perceptual hashes differ in at most this many bits
  # are reported as near-duplicates (a warning). null: no near-duplicate search.
  near_duplicate_distance: 4
  # extra_expectations: expectations.yaml     # more GX expectations, see README

# When a candidate may replace production (checked on the same data version).
promotion:
  metric: null             # null = the task's primary metric
  min_improvement: 0.0
  max_class_regression: 0.05
  # Live evidence required before an approval (see monitoring below); null: none.
  # shadow: {{min_requests: 500, min_agreement: 0.9}}

# Scheduled retraining.
schedule:
  cron: "0 3 * * 1"        # minute hour day month weekday
  timezone: UTC

# Live evidence from `mpt serve` (stored in the registry by `mpt run`).
monitoring:
  shadow_fraction: 0.0     # share of production's items a candidate also answers; 0 = off
  # shadow_alias: staging  # shadow this alias's version instead of the open request's
  keep_images: false       # disagreements keep a thumbnail (else only the image's sha256)
  window: 1000             # production predictions the drift (PSI) is measured over
  drift_threshold: null    # PSI above which a retrain is due; null = never
  cooldown_hours: 24       # at most one drift-triggered retrain in this many hours
"""

_README = """\
# Domain `{name}`

Task: {task}. Data: `data/metadata.csv` (columns {columns}) and `data/images/`.

{provenance}
What the labels can and cannot tell: ...

Check it with `mpt domain check {name}`; train it with `mpt run {name}`.
"""


def family_for(task: str) -> str:
    """The offline default if it runs the task, else the first family that does."""
    kind = TASKS.get(task).backbone_kind
    if FAMILIES.get("shipped").kind == kind:
        return "shipped"
    return next(f for f in FAMILIES if FAMILIES.get(f).kind == kind)


def table_columns(task: str) -> list[str]:
    """The metadata columns a new domain of `task` starts with (default column names)."""
    layout, contract = DataLayout(), TASKS.get(task).contract
    fields = ("image", "split", *contract.fields)
    return [layout.column(f) for f in fields]


def scaffold_domain(domains_dir: str | Path, name: str, task: str) -> Path:
    """Create domains_dir/name with domain.yaml, README.md and data/{images/, metadata.csv}."""
    check_name(name)
    if task not in TASKS:
        raise DomainConfigError(f"unknown task {task!r}; allowed: {', '.join(TASKS.names())}")
    root = Path(domains_dir) / name
    if root.exists():
        raise DomainConfigError(f"{root} already exists; choose another name or edit it")
    (root / DATA_DIR / "images").mkdir(parents=True)
    (root / DATA_DIR / "metadata.csv").write_text(",".join(table_columns(task)) + "\n")
    write_domain_files(root, name, task)
    return root


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise DomainConfigError(
            f"{name!r} is not a domain name: use lower case letters, digits, '-', '_'"
        )


def write_domain_files(
    root: Path,
    name: str,
    task: str,
    *,
    declaration: Mapping[str, Any] | None = None,
    group_column: str | None = None,
    provenance: str | None = None,
) -> None:
    """domain.yaml and README.md of domain `name` in `root` (checked: the file loads).

    declaration: what the domain declares for its task (`Task.declaration()`), written out
    instead of the task's commented example; group_column: the table's group column;
    provenance: the README's line on where the data comes from."""
    columns = ",".join(table_columns(task) + ([group_column] if group_column else []))
    group = "  # group_column: patient   # rows sharing a value must share one split (checked)"
    if group_column is not None:
        group = f"  group_column: {_scalar(group_column)}   # rows sharing it share one split"
    fields = {
        "name": name,
        "task": task,
        "columns": columns,
        "task_fields": TASKS.get(task).contract.declaration_help
        if declaration is None
        else _declared(declaration),
        "group": group,
        "families": " | ".join(FAMILIES.names()),
        "family": family_for(task),
        "presets": " | ".join(PRESETS.names()),
        "provenance": provenance
        or "Provenance: say where the images come from, their licence, and how labels were made.",
    }
    (root / CONFIG_FILE).write_text(_YAML.format(**fields), encoding="utf-8")
    (root / "README.md").write_text(_README.format(**fields), encoding="utf-8")
    load_domain_config(root / CONFIG_FILE)  # the scaffold itself must be valid


def _declared(declaration: Mapping[str, Any]) -> str:
    """A task's declaration as domain.yaml text: its own keys at the top level, the task's
    further options under `task_options`."""
    from .schema import DomainConfig

    top = {k: v for k, v in declaration.items() if k in DomainConfig.model_fields}
    options = {k: v for k, v in declaration.items() if k not in top}
    body = {k: v for k, v in top.items() if v is not None}
    if options:
        body["task_options"] = options
    text = ""
    if body:
        text = yaml.safe_dump(
            body, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
    return "# Declared from the imported data (`mpt domain new --task T` explains them).\n" + text


def _scalar(value: str) -> str:
    return yaml.safe_dump(value, default_style=None).removesuffix("\n...\n").strip()
