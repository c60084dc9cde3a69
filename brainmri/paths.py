"""Where things may be written: one containment test for every check that outputs stay out of inputs."""

from __future__ import annotations

from pathlib import Path


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies inside it, links resolved (a link into the data is the data)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one folder (links and relative parts resolved)."""
    return Path(a).resolve() == Path(b).resolve()
