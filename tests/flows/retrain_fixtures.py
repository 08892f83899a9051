"""Tiny domains in a temp git repo, on the tiny shipped backbone, for flow tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from cluster.ray import restore_env
from flows.datacache import RemoteLocation
from flows.dataset import layout_of, read_rows, rows_digest
from flows.domains import get_domain
from flows.jobs import BackboneRef, DataRef, TuneJob
from flows.versioning import DataVersioner, RemoteSpec
from mpt_core import load_backbone

from .domain_factory import make_domain

REPO = Path(__file__).resolve().parents[2]
TINY = BackboneRef("shipped", "tiny", (), load_backbone("shipped", "tiny").identity.weights_sha256)
"""The tiny shipped backbone by name, as workers load it."""


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


def mpt_run(tmp_path: Path, domains_dir: Path, **extra_env: str):
    """`mpt run` as a user starts it: no Prefect or Ray settings of the test session."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "RAY_")) and k != "PYTEST_CURRENT_TEST"
    }
    env["MPT_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra_env)
    out = subprocess.run(
        [sys.executable, "-m", "cli", "run", "--domains-dir", str(domains_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, out.stdout + out.stderr


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


def pushed_job(
    root: Path, task: str, name: str, *, epochs: int = 2, per_class: int = 3, **tuning
) -> TuneJob:
    """A job for a small domain whose data is tracked with DVC and pushed to a local remote
    under `root`: what a worker materialises by md5."""
    if not (root / ".git").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    domain = make_domain(root, task, per_class=per_class, name=name)
    config = yaml.safe_load((domain.root / "domain.yaml").read_text())
    config["backbone"] = {"family": "shipped", "name": "tiny"}
    config["tuning"] = {**config.get("tuning", {}), "epochs": epochs, "patience": 0, **tuning}
    (domain.root / "domain.yaml").write_text(yaml.safe_dump(config))
    domain = get_domain(root / "domains", name)
    remote = root / "remote"
    versioner = DataVersioner(root, RemoteSpec(str(remote)))
    data = versioner.track(domain.data_dir)
    versioner.push(domain.data_dir)
    layout = layout_of(domain.config)
    rows = read_rows(layout, domain.data_dir)
    return TuneJob(
        domain=name,
        spec=domain.config.tune_spec(),
        backbone=TINY,
        data=DataRef(RemoteLocation(str(remote)), data.md5, rows_digest(rows), layout, len(rows)),
    )
