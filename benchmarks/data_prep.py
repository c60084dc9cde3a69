"""Data preparation: the project's decode + resize + near-duplicate grouping (threads, uint8) vs a plain single-threaded
OpenCV loop, and the second run served from the cache.

    python benchmarks/data_prep.py [--data DIR] [--size 150]

Uses ../shared/datasets/brain-tumor-classification-mri when present, else a synthetic set it writes.
Prints the result as JSON (run_all.py collects it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import emit  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from brainmri.duplicates import group_images  # noqa: E402
from brainmri.data import find_images, load_dataset  # noqa: E402
from brainmri.synthetic import write_synthetic  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "brain-tumor-classification-mri"


def plain_loop(root: Path, size: int) -> np.ndarray:
    """What a notebook does: one image after another, cv2.imread + cv2.resize, into float32."""
    items, _ = find_images(root)
    return np.stack([cv2.resize(cv2.imread(str(root / rel)), (size, size)) for rel, _, _ in items]).astype(np.float32)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REAL) if REAL.is_dir() else None)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--json", help="also write the result here (run_all.py)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else write_synthetic(Path(tmp) / "synthetic", per_class=200, size=256)
        cache = Path(tmp) / "cache"
        t_plain, plain = timed(lambda: plain_loop(root, args.size))
        t_load, ds = timed(lambda: load_dataset(root, args.size, cache_dir=cache))
        t_hash = 0.0  # the canonical slices for near-duplicate search are made while decoding (in t_load)
        t_group, _ = timed(lambda: group_images(ds))
        t_cached, _ = timed(lambda: load_dataset(root, args.size, cache_dir=cache))
    ours = t_load + t_hash + t_group
    result = {"data": str(root), "images": len(ds.paths), "size": args.size,
              "seconds": {"plain_loop": t_plain, "decode_resize": t_load, "hash": t_hash, "group": t_group,
                          "ours_total": ours, "cached_reload": t_cached},
              "ours_vs_plain": ours / t_plain, "goal": "ours <= 1.5x plain loop, cached reload < 1 s",
              "met": ours / t_plain <= 1.5 and t_cached < 1.0, "memory_mb": {"float32_plain": plain.nbytes / 2**20,
                                                            "uint8_ours": ds.images.nbytes / 2**20},
              "meta": {"host": platform.node(), "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                       "opencv": cv2.__version__}}
    result["benchmark"] = "data preparation"
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
