"""Tiny domains in a temp git repo, on the tiny shipped backbone, for flow tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from flows.dispatch import restore_env

from .domain_factory import make_domain


def tiny_repo(root: Path, tasks=("classification", "vqa"), epochs: int = 2) -> Path:
    """A git repo with one small domain per task; returns its domains/ folder."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for task in tasks:
        domain = make_domain(root, task, per_class=3)
        config = yaml.safe_load((domain.root / "domain.yaml").read_text())
        config["backbone"] = {"family": "shipped", "name": "tiny"}
        config["tuning"] = {"epochs": epochs, "batch_size": 8}
        (domain.root / "domain.yaml").write_text(yaml.safe_dump(config))
    return root / "domains"


@contextmanager
def local_ray(**init_kwargs) -> Iterator[None]:
    """A local Ray for the block; the RAY_* variables ray.init exports are undone."""
    env = dict(os.environ)  # before the import: importing Ray exports RAY_CLIENT_MODE
    import ray

    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, **init_kwargs)
        yield
    finally:
        ray.shutdown()
        restore_env(env)
