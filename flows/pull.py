"""Versions taken out of the registry, verified the way the prediction server verifies what
it loads (`serving/catalog.py`): the store checks the blob against the version's sha256;
`verify_artifact` checks the tensors' checksum, the safetensors header and that every float
is finite; the backbone the artifact records must be the one the version's lineage names;
and a backbone loaded here must have the lineage's weights sha256.

In a notebook (this module imports the registry and `mpt_core`, no Prefect, Ray or DVC):

    from flows.pull import load_prompts_from_registry
    model = load_prompts_from_registry("retail", alias="production")
    model.predict([Example("shirt.png")])

`mpt registry pull DOMAIN (VERSION|@ALIAS) DIR [--format peft]` writes one into a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpt_core import load_backbone
from mpt_core.artifacts import CONFIG, TENSORS, PromptArtifact, prompts_from_bytes, verify_artifact
from mpt_core.artifacts import write_artifact as write_mpt
from mpt_core.backbones.base import BackboneIdentity, FrozenBackbone
from mpt_core.errors import ArtifactError, BackboneLoadError, BackboneMismatchError
from mpt_core.export import save_pretrained
from mpt_core.holder import PromptsHolder
from registry import PRODUCTION, PromptRegistry, VersionInfo

LAYOUTS = ("mpt", "peft")
"""`mpt`: prompts.safetensors + prompt_config.json (what `mpt_core.load_prompts` reads);
`peft`: the folder layout of PEFT's save_pretrained (`mpt_core.export`)."""


@dataclass(frozen=True)
class PulledVersion:
    """A version's record and its artifact, verified."""

    version: VersionInfo
    artifact: PromptArtifact

    @property
    def label(self) -> str:
        return f"{self.version.domain} v{self.version.number}"


def lineage(version: VersionInfo) -> BackboneIdentity:
    """The backbone a version's lineage names."""
    b = version.backbone
    return BackboneIdentity(b.family, b.name, b.weights_sha256)


def fetch_version(registry: PromptRegistry, domain: str, ref: str | int) -> PulledVersion:
    """Version `ref` of `domain` (a number, or "@alias"), its artifact verified: the blob
    against its sha256 (the store), the artifact's own checks, and the backbone it records
    against the version's lineage."""
    info = registry.lookup(domain, ref)
    label = f"{domain} v{info.number}"
    files = registry.artifact_files(domain, info.number)
    missing = [name for name in (CONFIG, TENSORS) if name not in files]
    if missing:
        raise ArtifactError(
            f"{label}: its stored artifact has no {', '.join(missing)}; it was not written by "
            "save_prompts, so it cannot be pulled or loaded"
        )
    artifact = PromptArtifact(files[CONFIG].decode(), files[TENSORS])
    try:
        verify_artifact(artifact, source=label, backbone=lineage(info))
    except BackboneMismatchError as exc:
        raise BackboneMismatchError(
            f"{label}: the artifact and the registry disagree on its backbone ({exc}); the "
            "version's lineage cannot be trusted: register the artifact again"
        ) from None
    return PulledVersion(info, artifact)


def pull(
    registry: PromptRegistry,
    domain: str,
    ref: str | int,
    target: str | Path,
    *,
    layout: str = "mpt",
) -> tuple[PulledVersion, Path]:
    """Write version `ref` of `domain`, verified, into the folder `target` (created; it
    must be empty), in `layout` (one of LAYOUTS)."""
    if layout not in LAYOUTS:
        raise ArtifactError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArtifactError(
            f"{target} exists and is not an empty folder; pull into a new or empty folder"
        )
    pulled = fetch_version(registry, domain, ref)
    if layout == "peft":
        save_pretrained(pulled.artifact, target, source=pulled.label)
    else:
        write_mpt(pulled.artifact, target)
    return pulled, target


def backbone_for(version: VersionInfo, backbone: FrozenBackbone | None = None) -> FrozenBackbone:
    """The backbone `version` was tuned on: `backbone` if given (its identity must be the
    lineage's), else loaded by the lineage's family and name, whose weights must have the
    lineage's sha256 (as the prediction server checks)."""
    wanted = lineage(version)
    label = f"{version.domain} v{version.number}"
    if backbone is not None:
        if backbone.identity != wanted:
            raise BackboneMismatchError(
                f"{label} was tuned on backbone {wanted}, not on the given {backbone.identity}; "
                f"pass load_backbone({wanted.family!r}, {wanted.name!r}) or none"
            )
        return backbone
    try:
        loaded = load_backbone(wanted.family, wanted.name)
    except Exception as exc:  # any family's loader: missing files, unknown name...
        raise BackboneLoadError(
            f"{label}: its backbone {wanted.family}:{wanted.name} cannot be loaded here "
            f"({type(exc).__name__}: {exc}). Fix: make that backbone available on this "
            "machine (installed package, local path or cache)"
        ) from exc
    if loaded.identity.weights_sha256 != wanted.weights_sha256:
        raise BackboneMismatchError(
            f"{label} was tuned on backbone {wanted.family}:{wanted.name} with weights sha256 "
            f"{wanted.weights_sha256[:12]}…, but that backbone here has weights "
            f"{loaded.identity.weights_sha256[:12]}…. Fix: install the exact weights the "
            "version was tuned on"
        )
    return loaded


def load_prompts_from_registry(
    domain: str,
    version: int | str | None = None,
    *,
    alias: str = PRODUCTION,
    registry: PromptRegistry | None = None,
    backbone: FrozenBackbone | None = None,
) -> PromptsHolder:
    """The prompted model of `domain`'s `version` (default: the version `alias` points at,
    `production`), from the registry of the MPT_* settings (or `registry`), on its backbone
    (loaded once per process, or `backbone`), verified, ready to predict (eval mode)."""
    if registry is None:
        from registry import open_registry

        registry = open_registry()
    pulled = fetch_version(registry, domain, f"@{alias}" if version is None else version)
    model = prompts_from_bytes(
        pulled.artifact, backbone_for(pulled.version, backbone), source=pulled.label
    )
    return model.eval()
