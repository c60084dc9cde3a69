"""Files written whole or not at all: each writer writes a temporary file of its own beside the target (its
process and thread in the name, so jobs sharing a folder never write into one another's), then renames it over
the target. Readers see the old file or the new one, never half of one; a failed write leaves nothing behind."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


def replace_with(path: Path, write) -> None:
    """Make `path` what write(binary file) writes, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write text (UTF-8) so that readers never see half a file."""
    replace_with(path, lambda f: f.write(text.encode("utf-8")))


def save_arrays(path: Path, **arrays) -> None:
    """np.savez of `arrays` to `path` (its name kept as given), so that readers never see half a file."""
    replace_with(path, lambda f: np.savez(f, **arrays))
