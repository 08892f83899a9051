"""Images of an import written into a staging folder (copied, or hard-linked where the file
system allows), each once however many records name it, with the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .base import Record
from .source import Source


@dataclass(frozen=True)
class StagedImage:
    path: str
    """Relative to the data folder: `images/<path in SOURCE>`."""
    sha256: str
    linked: bool


class Stager:
    """Writes each record's image to `folder/<prefix>/<record.image>` once."""

    def __init__(self, source: Source, folder: Path, prefix: str, link: bool) -> None:
        self.source, self.folder, self.prefix, self.link = source, folder, prefix, link
        self.linked = self.copied = 0
        self._done: dict[str, StagedImage] = {}

    def add(self, record: Record) -> StagedImage:
        done = self._done.get(record.image)
        if done is not None:
            return done
        rel = f"{self.prefix}/{record.image}"
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = record.data
        linked = data is None and self.link and self._hard_link(record.image, target)
        if linked:
            data = target.read_bytes()
            self.linked += 1
        else:
            data = data if data is not None else self.source.read(record.image)
            target.write_bytes(data)
            self.copied += 1
        staged = StagedImage(rel, hashlib.sha256(data).hexdigest(), linked)
        self._done[record.image] = staged
        return staged

    def _hard_link(self, rel: str, target: Path) -> bool:
        """Link `target` to the source file; False where that cannot be (S3, another file
        system, a file system without hard links): the image is copied instead."""
        local = self.source.local_path(rel)
        if local is None:
            return False
        try:
            os.link(local, target, follow_symlinks=False)
        except OSError:
            return False
        return True

    def drop(self, image: StagedImage) -> None:
        """Remove a staged image no row keeps (a row already in the domain)."""
        (self.folder / image.path).unlink()
        if image.linked:
            self.linked -= 1
        else:
            self.copied -= 1
