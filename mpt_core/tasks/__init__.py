"""Tasks, registered by name: classification, retrieval, vqa (dual encoders) and
captioning, vqa-open (generative backbones)."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Metrics, Task
from .captioning import CaptioningTask
from .classification import ClassificationTask
from .retrieval import RetrievalTask
from .vqa import VQATask
from .vqa_open import OpenVQATask

TASKS: Registry[type[Task]] = Registry("task")
for _cls in (ClassificationTask, RetrievalTask, VQATask, CaptioningTask, OpenVQATask):
    TASKS.register(_cls.name, _cls)


def task_from_dict(name: str, spec: dict[str, Any]) -> Task:
    return TASKS.get(name).from_dict(spec)


__all__ = [
    "TASKS",
    "CaptioningTask",
    "ClassificationTask",
    "Metrics",
    "OpenVQATask",
    "RetrievalTask",
    "Task",
    "VQATask",
    "task_from_dict",
]
