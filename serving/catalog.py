"""Which prompt version of every domain this replica serves, kept in step with the registry.

A background thread asks the registry where the alias points (one query) every
`poll_seconds`. A domain whose alias moved gets its new version loaded beside the old
one (backbone from the version's lineage, loaded once per distinct backbone and checked
against the recorded sha256; artifact verified by the store's sha256), then swapped in
with one reference assignment. A request takes one `Snapshot` when it arrives and is
served from it, so each of its items sees exactly one version per domain, old or new.
A version that fails to load leaves the old one serving; the failure is kept for
/readyz and the log, and the version is tried again after `retry_seconds`.

While the registry cannot be read (server down, SQLite file deleted, replaced or damaged:
`registry.db` notices each at the next query), what is loaded keeps serving and the
snapshot's `registry_error` says why; the next poll that reads it again recovers by
itself, alias moves made meanwhile included.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import torch

from mpt_core import load_backbone
from mpt_core.artifacts import CONFIG, TENSORS, PromptArtifact, prompts_from_bytes
from mpt_core.backbones import Backbone, GenerativeBackbone
from mpt_core.backbones.base import BackboneIdentity
from mpt_core.inference import DomainModel
from registry import PromptRegistry
from registry.errors import RegistryUnavailable, short_reason
from registry.records import BackboneInfo, VersionInfo

log = logging.getLogger("serving")


class LoadError(Exception):
    """A version cannot be served on this replica; the message says why and the fix."""


@dataclass(frozen=True)
class Deployed:
    """One domain's version, loaded and ready on this replica."""

    domain: str
    alias: str
    version: int
    model: DomainModel
    backbone: BackboneIdentity
    method: str
    artifact_sha256: str
    loaded_at: datetime

    @property
    def task(self) -> str:
        return self.model.task.name


@dataclass(frozen=True)
class LoadFailure:
    domain: str
    version: int
    error: str
    at: datetime
    monotonic: float = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "version": self.version,
            "error": self.error,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Snapshot:
    """What is served at one moment; replaced whole, never changed."""

    alias: str
    served: Mapping[str, Deployed] = field(default_factory=dict)
    targets: Mapping[str, int | None] = field(default_factory=dict)
    """Every registered domain -> the version its alias points at (None: unset)."""
    failures: Mapping[str, LoadFailure] = field(default_factory=dict)
    synced: bool = False
    """The registry has been read at least once."""
    registry_error: str | None = None
    last_sync: datetime | None = None


def fetch_artifact(registry: PromptRegistry, info: VersionInfo) -> PromptArtifact:
    """A version's artifact in memory, verified against its sha256 by the store (`info`
    is the version the caller already read, so the registry is not asked again)."""
    files = registry.store.get_files(info.artifact_sha256, label=f"{info.domain} v{info.number}")
    return PromptArtifact(files[CONFIG].decode(), files[TENSORS])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class BackboneLoader:
    """Loads each distinct backbone of the versions' lineage once; refuses a mismatch."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._loaded: dict[BackboneIdentity, Backbone | GenerativeBackbone] = {}
        self._lock = threading.Lock()

    def loaded(self) -> list[BackboneIdentity]:
        return list(self._loaded)

    def get(self, info: BackboneInfo) -> Backbone | GenerativeBackbone:
        """The loaded backbone (dual encoder or generative) a version's lineage names."""
        wanted = BackboneIdentity(info.family, info.name, info.weights_sha256)
        with self._lock:
            if wanted in self._loaded:
                return self._loaded[wanted]
            try:
                backbone = load_backbone(info.family, info.name)
            except Exception as exc:  # any family's loader: missing files, unknown name...
                raise LoadError(
                    f"its backbone {info.family}:{info.name} cannot be loaded here "
                    f"({short_reason(exc)}). Fix: make that backbone available to the "
                    "server (installed package, local path or cache), or re-tune the domain "
                    "on a backbone the server has"
                ) from exc
            actual = backbone.identity.weights_sha256
            if actual != info.weights_sha256:
                raise LoadError(
                    f"it was tuned on backbone {info.family}:{info.name} with weights sha256 "
                    f"{info.weights_sha256[:12]}…, but that backbone here has weights "
                    f"{actual[:12]}…. Fix: serve with the exact weights the version was tuned "
                    "on, or re-tune the domain on these weights"
                )
            if backbone.device != self.device:
                backbone.to(self.device)
            self._loaded[wanted] = backbone
            return backbone


class Catalog:
    """The served versions of every domain under one alias, refreshed from the registry."""

    def __init__(
        self,
        registry: PromptRegistry,
        alias: str,
        *,
        device: torch.device,
        poll_seconds: float = 1.0,
        retry_seconds: float = 30.0,
        on_change=None,
        backbones: BackboneLoader | None = None,
    ) -> None:
        self.registry = registry
        self.alias = alias
        self.backbones = backbones or BackboneLoader(device)
        """Shared with another catalog (the shadows'), so a backbone is loaded once."""
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.on_change = on_change or (lambda snapshot: None)
        self._snapshot = Snapshot(alias)
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> Snapshot:
        return self._snapshot  # one attribute read: always a whole snapshot

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # ------------------------------------------------------------------ the refresh loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mpt-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # never let the refresher die: log and try again
                log.exception("serving: refreshing from the registry failed")
            self._synced.set()
            if self._stop.wait(self.poll_seconds):
                return

    def sync(self, targets: Mapping[str, int | None] | None = None) -> Snapshot:
        """Read the alias of every domain once (or take `targets`: domain -> version, what
        a caller read itself); load and swap in what moved. While the registry cannot be
        read, what is loaded stays and `registry_error` says why."""
        old = self._snapshot
        try:
            if targets is None:
                targets = self.registry.alias_targets(self.alias)
        except Exception as exc:
            self._publish(replace(old, registry_error=self._unreachable(exc, old)))
            return self._snapshot
        served = dict(old.served)
        failures = {d: f for d, f in old.failures.items() if targets.get(d) == f.version}
        registry_error = None
        for domain, target in targets.items():
            current = served.get(domain)
            if target is None:
                if current is not None:
                    log.warning("serving: %s has no %s version any more", domain, self.alias)
                    del served[domain]
                continue
            if current is not None and current.version == target:
                failures.pop(domain, None)
                continue
            failure = failures.get(domain)
            if failure and time.monotonic() - failure.monotonic < self.retry_seconds:
                continue
            try:
                served[domain] = self._load(domain, target)
            except RegistryUnavailable as exc:  # the registry went away, not this version
                registry_error = self._unreachable(exc, old)
                break
            except Exception as exc:
                failures[domain] = self._failed(domain, target, current, exc)
                continue
            failures.pop(domain, None)
            self._loaded_message(served[domain], current)
        for domain in set(served) - set(targets):
            del served[domain]
        self._publish(
            Snapshot(
                self.alias,
                served,
                dict(targets),
                failures,
                synced=True,
                registry_error=registry_error,
                last_sync=datetime.now(UTC) if registry_error is None else old.last_sync,
            )
        )
        return self._snapshot

    def _unreachable(self, exc: Exception, old: Snapshot) -> str:
        """What /readyz shows of a registry fault (no SQL, no database URL); the log gets
        the whole error once, when it starts or changes."""
        message = short_reason(exc)
        if message != old.registry_error:
            log.error(
                "serving: cannot read the registry, serving what is loaded: %s: %s",
                type(exc).__name__,
                exc,
            )
        return message

    def _publish(self, snapshot: Snapshot) -> None:
        changed = {d: v.version for d, v in snapshot.served.items()} != {
            d: v.version for d, v in self._snapshot.served.items()
        } or snapshot.failures.keys() != self._snapshot.failures.keys()
        self._snapshot = snapshot
        if changed:
            self.on_change(snapshot)

    # ------------------------------------------------------------------ one version
    def _load(self, domain: str, number: int) -> Deployed:
        started = time.perf_counter()
        info = self.registry.get_version(domain, number)
        backbone = self.backbones.get(info.backbone)
        # the store verifies the blob against the version's sha256, the library the tensors
        model = prompts_from_bytes(
            fetch_artifact(self.registry, info), backbone, f"{domain} v{number}"
        ).eval()
        log.debug("serving: %s v%d loaded in %.2fs", domain, number, time.perf_counter() - started)
        return Deployed(
            domain=domain,
            alias=self.alias,
            version=number,
            model=model,
            backbone=backbone.identity,
            method=info.method,
            artifact_sha256=info.artifact_sha256,
            loaded_at=datetime.now(UTC),
        )

    def _failed(
        self, domain: str, number: int, current: Deployed | None, exc: Exception
    ) -> LoadFailure:
        # the API shows `error` (/readyz, /v1/domains, refused items); the log the full text
        error = str(exc) if isinstance(exc, LoadError) else short_reason(exc)
        still = f"still serving v{current.version}" if current else "nothing else to serve"
        log.error(
            "serving: %s v%d (%s) failed to load, %s; retrying in %.0fs: %s: %s",
            domain,
            number,
            self.alias,
            still,
            self.retry_seconds,
            type(exc).__name__,
            exc,
        )
        return LoadFailure(domain, number, error, datetime.now(UTC), time.monotonic())

    def _loaded_message(self, new: Deployed, old: Deployed | None) -> None:
        was = f" (was v{old.version})" if old else ""
        log.info(
            "serving: %s %s -> v%d%s, %s on %s",
            new.domain,
            self.alias,
            new.version,
            was,
            new.task,
            new.backbone,
        )
