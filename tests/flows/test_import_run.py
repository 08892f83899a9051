"""Imported domains train: one of each format goes through `mpt domain check` and `mpt run`
as a user runs them; an append then gives a new data version whose lineage says how many
rows it added, with the rows of the first version unchanged, and only its images are
embedded (the rest come from the node's feature store)."""

from __future__ import annotations

import csv
import subprocess

import pytest
import yaml

from cli import main
from flows.importers import ImportRequest, import_domain
from registry import PromptRegistry, RegistrySettings

from .import_sources import fashion_imagefolder, fashion_parquet, manufacturing_vqa, medical_coco
from .retrain_fixtures import mpt_run

pytestmark = pytest.mark.slow  # two `mpt run`s: a local Ray and Prefect's ephemeral server

IMPORTS = {
    "shop": ("imagefolder", lambda root: fashion_imagefolder(root, per_class=6)),
    "shop-parquet": ("parquet", lambda root: fashion_parquet(root, per_class=5)),
    "scans": ("coco-captions", lambda root: medical_coco(root, sources=3, tiles=5)),
    "fabric": ("vqa", lambda root: manufacturing_vqa(root, per_answer=4)),
}


def _tiny(domain_root) -> None:
    """The tiny shipped backbone, two epochs, no search: a run of minutes on two cores."""
    config = yaml.safe_load((domain_root / "domain.yaml").read_text())
    config["backbone"] = {"family": "shipped", "name": "tiny"}
    config["tuning"] = {"epochs": 2, "batch_size": 8}
    (domain_root / "domain.yaml").write_text(yaml.safe_dump(config))


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_imported_domains_train_and_an_append_is_a_new_data_version(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    domains = repo / "domains"
    for name, (fmt, build) in IMPORTS.items():
        source = build(tmp_path / "sources" / name)
        import_domain(domains, ImportRequest(name, fmt, str(source)))
        _tiny(domains / name)
        assert main(["domain", "check", name, "--domains-dir", str(domains)]) == 0, (
            capsys.readouterr().out
        )
    out, text = mpt_run(tmp_path, domains)
    assert out.returncode == 0, text[-3000:]
    for name in IMPORTS:
        (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{name} ")]
        assert "registered" in line, line
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("shop ")]
    assert " 18/18 " in line, line  # embedded / images: every image, the first time

    settings = RegistrySettings(home=tmp_path / "home", database_url=None, artifact_store=None)
    registry = PromptRegistry.from_settings(settings)
    (first,) = registry.list_versions("shop")
    old = registry.data_version("shop", first.data_version)
    assert old.rows_added == 18 and old.added_from.startswith("import 1: imagefolder ")
    old_rows = _rows(domains / "shop" / "data" / "metadata.csv")

    week = fashion_imagefolder(tmp_path / "sources" / "week-2", per_class=4, offset=60)
    import_domain(domains, ImportRequest("shop", "imagefolder", str(week), append=True))
    out, text = mpt_run(tmp_path, domains)
    assert out.returncode == 0, text[-3000:]
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("shop ")]
    assert "registered" in line, line
    assert " 12/30 " in line, line  # only the appended images were embedded
    second = registry.list_versions("shop")[-1]
    assert second.number == 2 and second.data_version != first.data_version
    new = registry.data_version("shop", second.data_version)
    assert new.rows == 30 and new.rows_added == 12
    assert new.added_from.startswith("append 2: imagefolder ") and str(week) in new.added_from
    assert _rows(domains / "shop" / "data" / "metadata.csv")[:18] == old_rows
    assert registry.data_version("shop", first.data_version) == old  # the old record stays
    for name in ("shop-parquet", "scans", "fabric"):  # nothing changed there: skipped
        (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{name} ")]
        assert "skipped" in line, line
