"""manifest.csv: which images of a dataset folder are augmented copies, and of which source image.

balance.py (augment.py) writes it; every training run reads it (pipeline.py), so that a copy joins its
source's near-duplicate group and is trained on only where its source is, never validated or tested on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import UserError

FIELDS = ("path", "class", "kind", "source", "transform")  # kind: original | added | augmented


def write_manifest(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def read_manifest(root: Path) -> dict[str, dict]:
    """manifest.csv of an augmented dataset folder, by path ({} when the folder has none)."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not set(FIELDS) <= set(rows[0]):
        raise UserError(f"{path} lacks columns {sorted(set(FIELDS) - set(rows[0]))}")
    return {r["path"]: r for r in rows}


def source_of(paths: list[str], manifest: dict[str, dict]) -> np.ndarray:
    """Index of each augmented copy's source image: -1 for an image that is not a copy, -2 for a copy
    whose source is not in `paths` (it was skipped, say)."""
    index = {p: i for i, p in enumerate(paths)}
    sources = np.full(len(paths), -1)
    for p, row in manifest.items():
        if row["kind"] == "augmented" and p in index:
            sources[index[p]] = index.get(row["source"], -2)
    return sources
