"""Containment: every file a domain names stays inside its folder, links included.

A domain's data folder is versioned by DVC, which follows symbolic links: it would hash the
link's target, copy it into its cache, push it to the remote and replace the link by a copy
of the target. Here DVC materialises data as copies (its default `cache.type`, reflink or
copy), never as links, so a data folder holds regular files and folders only: a symbolic
link anywhere in it, wherever it points, is refused by name and never opened, hashed,
copied or versioned. Other files a domain names (extra expectations) must resolve, links
followed, inside the domain's folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SHOWN = 5


class ContainmentError(ValueError):
    """A path a domain names leaves its folder, or the data folder holds a link."""


def lexical_inside(path: Path, root: Path) -> bool:
    """`path` (as written, no resolving) lies inside `root`."""
    try:
        Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        return False
    return True


def link_on_the_way(path: Path, root: Path) -> Path | None:
    """The first component of `path` below `root` that is a symbolic link, if any (only
    `lstat` is used: no link is followed and nothing is opened)."""
    current = Path(os.path.normpath(root))
    for part in Path(os.path.normpath(path)).relative_to(current).parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return current
        except FileNotFoundError:
            return None
    return None


def check_data_folder(data_dir: Path) -> list[str]:
    """Why the data folder cannot be versioned as it is: the folder itself or anything in
    it is a symbolic link or a special file (fifo, socket, device). [] if it is clean."""
    try:
        mode = os.lstat(data_dir).st_mode
    except FileNotFoundError:
        return [f"{data_dir} does not exist; create it with the images and the metadata table"]
    if stat.S_ISLNK(mode):
        return [
            f"{data_dir} is a symbolic link; the data folder must be a real folder inside "
            "the domain (DVC would version whatever it points to)"
        ]
    links, special = [], []
    for top, dirs, files in os.walk(data_dir, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(top) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                links.append(path.relative_to(data_dir).as_posix())
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                special.append(path.relative_to(data_dir).as_posix())
    problems = []
    if links:
        problems.append(
            f"{len(links)} symbolic link(s) in {data_dir}: {_first(links)}; links are refused "
            "wherever they point (DVC would copy their targets into its cache and remote): "
            "put the real files into data/ instead"
        )
    if special:
        problems.append(
            f"{len(special)} special file(s) (fifo, socket, device) in {data_dir}: "
            f"{_first(special)}; remove them"
        )
    return problems


def contained_file(path: Path, root: Path, what: str) -> Path:
    """`path` if it resolves, links followed, to a regular file inside `root`; else
    ContainmentError naming it. Nothing outside `root` is opened."""
    if not lexical_inside(path, root):
        raise ContainmentError(f"{what} {path} is outside {root}; keep it inside the folder")
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ContainmentError(
            f"{what} {path} resolves outside {root} through a symbolic link; refused "
            "(never read): put the real file inside the folder"
        )
    return path


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")
