"""`mpt domain new`: a commented domain.yaml, a README and an empty data layout."""

from __future__ import annotations

from pathlib import Path

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
  # extra_expectations: expectations.yaml     # more GX expectations, see README

# When a candidate may replace production (checked on the same data version).
promotion:
  metric: null             # null = the task's primary metric
  min_improvement: 0.0
  max_class_regression: 0.05

# Scheduled retraining.
schedule:
  cron: "0 3 * * 1"        # minute hour day month weekday
  timezone: UTC
"""

_README = """\
# Domain `{name}`

Task: {task}. Data: `data/metadata.csv` (columns {columns}) and `data/images/`.

Provenance: say where the images come from, their licence, and how labels were made.
What the labels can and cannot tell: ...

Check it with `mpt domain check {name}`; train it with `mpt run {name}`.
"""


def _family_for(task: str) -> str:
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
    if not NAME_RE.match(name):
        raise DomainConfigError(
            f"{name!r} is not a domain name: use lower case letters, digits, '-', '_'"
        )
    if task not in TASKS:
        raise DomainConfigError(f"unknown task {task!r}; allowed: {', '.join(TASKS.names())}")
    columns = ",".join(table_columns(task))
    root = Path(domains_dir) / name
    if root.exists():
        raise DomainConfigError(f"{root} already exists; choose another name or edit it")
    (root / DATA_DIR / "images").mkdir(parents=True)
    fields = {
        "name": name,
        "task": task,
        "columns": columns,
        "task_fields": TASKS.get(task).contract.declaration_help,
        "families": " | ".join(FAMILIES.names()),
        "family": _family_for(task),
        "presets": " | ".join(PRESETS.names()),
    }
    (root / CONFIG_FILE).write_text(_YAML.format(**fields))
    (root / "README.md").write_text(_README.format(**fields))
    (root / DATA_DIR / "metadata.csv").write_text(columns + "\n")
    load_domain_config(root / CONFIG_FILE)  # the scaffold itself must be valid
    return root
