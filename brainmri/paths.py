"""Where things may be written: one containment test for every check that outputs stay out of inputs."""

from __future__ import annotations

from pathlib import Path


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies inside it, links resolved (a link into the data is the data)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
