"""Find domains: every `domains/*/domain.yaml`. A broken one is reported, the rest load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .schema import DomainConfig, DomainConfigError, load_domain_config

CONFIG_FILE = "domain.yaml"
DATA_DIR = "data"


@dataclass(frozen=True)
class Domain:
    """A discovered domain folder and its validated config."""

    root: Path
    config: DomainConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    @property
    def metadata_path(self) -> Path:
        return self.data_dir / self.config.data.metadata


@dataclass
class Discovery:
    domains: dict[str, Domain] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Folder name -> why its domain.yaml was skipped."""


def discover(domains_dir: str | Path, names: list[str] | None = None) -> Discovery:
    """Load every domain under `domains_dir` (or only `names`), collecting errors per folder."""
    domains_dir = Path(domains_dir)
    found = Discovery()
    for path in sorted(domains_dir.glob(f"*/{CONFIG_FILE}")):
        folder = path.parent.name
        if names and folder not in names:
            continue
        try:
            config = load_domain_config(path)
        except DomainConfigError as exc:
            found.errors[folder] = str(exc)
            continue
        if config.name != folder:
            found.errors[folder] = (
                f"{path}: name {config.name!r} differs from its folder {folder!r}; "
                "rename one of them or drop `name:`"
            )
            continue
        found.domains[config.name] = Domain(path.parent, config)
    for name in names or []:
        if name not in found.domains and name not in found.errors:
            known = ", ".join(sorted(p.parent.name for p in domains_dir.glob(f"*/{CONFIG_FILE}")))
            found.errors[name] = (
                f"no domain {name!r} under {domains_dir}; found: {known or '(none)'}"
            )
    return found


def get_domain(domains_dir: str | Path, name: str) -> Domain:
    found = discover(domains_dir, [name])
    if name in found.errors:
        raise DomainConfigError(found.errors[name])
    return found.domains[name]
