"""The demo domains' examples per split, as every method and the screening script read them."""

from __future__ import annotations

from flows.dataset import layout_of, read_rows
from flows.domains import Domain
from mpt_core import Example
from mpt_core.data import load_image
from mpt_core.tasks.base import Task

from .base import Splits

DOMAINS = ("retail", "manufacturing", "medical")


def group_key(task: Task, example: Example) -> str:
    """What a linear probe's classes are, from the task's contract: the target value, per
    selector where the value set is declared per question ("question\nanswer")."""
    contract = task.contract
    target = getattr(example, contract.target)
    if contract.value_set is not None and contract.value_set.per:
        return f"{getattr(example, contract.value_set.per)}\n{target}"
    return target


def load_splits(domain: Domain, shots: int | None) -> Splits:
    """The domain's examples per split, read by the platform's one table reader (what
    validation approves is what trains); `shots` caps the rows per class and split."""
    task = domain.config.build_task()
    splits: Splits = {"train": [], "val": [], "test": []}
    seen: dict[tuple, int] = {}
    for row in read_rows(layout_of(domain.config), domain.data_dir):
        example = row.example(domain.data_dir)
        key = (row.split, group_key(task, example))
        seen[key] = seen.get(key, 0) + 1
        if shots is not None and seen[key] > shots:
            continue
        splits[row.split].append(example.replace(image=load_image(example.image)))
    return splits
