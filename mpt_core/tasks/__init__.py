"""Tasks, registered by name: classification, retrieval, vqa."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Metrics, Task
from .classification import ClassificationTask
from .retrieval import RetrievalTask
from .vqa import VQATask

TASKS: Registry[type[Task]] = Registry("task")
for _cls in (ClassificationTask, RetrievalTask, VQATask):
    TASKS.register(_cls.name, _cls)


def task_from_dict(name: str, spec: dict[str, Any]) -> Task:
    return TASKS.get(name).from_dict(spec)


__all__ = [
    "TASKS",
    "ClassificationTask",
    "Metrics",
    "RetrievalTask",
    "Task",
    "VQATask",
    "task_from_dict",
]
