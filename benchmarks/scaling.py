"""Benchmark 7: data preparation (decode, resize, hash, group) and one training epoch at 25%, 50% and 100%
of the dataset. Training should grow linearly; near-duplicate retrieval is a chunked matrix product
(quadratic, but a small share of the time at this size: benchmarks/near_duplicates.py measures it alone).

    python benchmarks/scaling.py [--size 96 --backbone small_cnn]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import data_root, emit, meta


def _share_folder(root: Path, items, fraction: float, dest: Path) -> Path:
    """A folder of links to a class-stratified share of the images (the input stays untouched)."""
    import numpy as np

    from brainmri.pipeline import stratified_share

    labels = np.array([label for _, label, _ in items])
    for i in stratified_share(labels, fraction, 0) if fraction < 1 else range(len(items)):
        rel = items[i][0]
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink((root / rel).resolve(), dest / rel)
    return dest


def run(size: int, backbone: str, fractions=(0.25, 0.5, 1.0)) -> dict:
    import keras

    from brainmri.duplicates import group_images
    from brainmri.config import load_config
    from brainmri.batches import make_batches
    from brainmri.data import find_images, load_dataset
    from brainmri.training import compile_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = data_root(Path(tmp))
        items, _ = find_images(root)
        for fraction in fractions:
            folder = _share_folder(root, items, fraction, Path(tmp) / f"share{fraction}")
            start = time.perf_counter()
            ds = load_dataset(folder, size)
            group_images(ds)
            prep = time.perf_counter() - start
            keras.utils.set_random_seed(0)
            model = compile_model(load_config(None, [f"backbone={backbone}", f"image_size={size}", "weights=none"]),
                                  4, jit_compile=False)
            data = make_batches(ds.images, ds.labels, 4, 32, shuffle=True)
            model.fit(make_batches(ds.images[:64], ds.labels[:64], 4, 32), epochs=1, verbose=0)  # warm-up: tracing
            # is not per-image cost
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            rows.append({"fraction": fraction, "images": len(ds.labels), "prep_seconds": prep,
                         "epoch_seconds": time.perf_counter() - start})
    base = rows[0]
    for r in rows:  # 1.0 = exactly linear: time grows as the number of images
        r["prep_vs_linear"] = (r["prep_seconds"] / base["prep_seconds"]) / (r["images"] / base["images"])
        r["epoch_vs_linear"] = (r["epoch_seconds"] / base["epoch_seconds"]) / (r["images"] / base["images"])
    worst = max(max(r["prep_vs_linear"], r["epoch_vs_linear"]) for r in rows)
    return {"benchmark": "scaling with data size", "image_size": size, "backbone": backbone, "rows": rows,
            "worst_vs_linear": worst, "goal": "linear (ratio near 1)", "met": worst < 1.25, "meta": meta()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--json")
    a = p.parse_args(argv)
    emit(run(a.size, a.backbone), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
