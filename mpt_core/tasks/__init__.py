"""Tasks, registered by name: classification, retrieval, vqa (dual encoders) and
captioning, vqa-open (generative backbones)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._registry import Registry
from .base import Metrics, Task, TaskContract, TextField, ValueSet
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


def task_from_declaration(name: str, declared: Mapping[str, Any]) -> Task:
    """The task a domain declares (domain.yaml's labels / answers / template / options)."""
    return TASKS.get(name).from_declaration(declared)


__all__ = [
    "TASKS",
    "CaptioningTask",
    "ClassificationTask",
    "Metrics",
    "OpenVQATask",
    "RetrievalTask",
    "Task",
    "TaskContract",
    "TextField",
    "VQATask",
    "ValueSet",
    "task_from_declaration",
    "task_from_dict",
]
