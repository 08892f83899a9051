"""Tasks, registered by name: classification, retrieval, vqa."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._registry import Registry
from .base import Metrics, Task, TaskContract, ValueSet
from .classification import ClassificationTask
from .retrieval import RetrievalTask
from .vqa import VQATask

TASKS: Registry[type[Task]] = Registry("task")
for _cls in (ClassificationTask, RetrievalTask, VQATask):
    TASKS.register(_cls.name, _cls)


def task_from_dict(name: str, spec: dict[str, Any]) -> Task:
    return TASKS.get(name).from_dict(spec)


def task_from_declaration(name: str, declared: Mapping[str, Any]) -> Task:
    """The task a domain declares (domain.yaml's labels / answers / template / options)."""
    return TASKS.get(name).from_declaration(declared)


__all__ = [
    "TASKS",
    "ClassificationTask",
    "Metrics",
    "RetrievalTask",
    "Task",
    "TaskContract",
    "VQATask",
    "ValueSet",
    "task_from_declaration",
    "task_from_dict",
]
