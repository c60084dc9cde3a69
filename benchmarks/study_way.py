"""Benchmark 2: the study notebook's way (every image decoded into one float32 NumPy array, then
fit(validation_split=0.1)) against train.py's (uint8 array, batches cast on the fly). Same model,
same images, same epochs; each way in its own process, so that its peak memory (RSS) is its own.

    python benchmarks/study_way.py [--backbone small_cnn --size 150 --epochs 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_root, emit, meta


def one_way(way: str, backbone: str, size: int, epochs: int) -> dict:
    import cv2
    import keras
    import numpy as np

    from brainmri.config import load_config
    from brainmri.batches import make_batches
    from brainmri.data import find_images, load_dataset
    from brainmri.training import compile_model

    with tempfile.TemporaryDirectory() as tmp:
        root = data_root(Path(tmp))
        keras.utils.set_random_seed(0)
        cfg = load_config(None, [f"backbone={backbone}", f"image_size={size}", "weights=none"])
        model = compile_model(cfg, 4, jit_compile=False)
        start = time.perf_counter()
        if way == "study":
            items, classes = find_images(root)
            x = np.stack([cv2.resize(cv2.imread(str(root / rel)), (size, size)) for rel, _, _ in items]).astype(np.float32)
            y = np.eye(4, dtype=np.float32)[[classes.index(label) for _, label, _ in items]]
            order = np.random.default_rng(0).permutation(len(x))  # the notebook shuffled before fit
            x, y = x[order], y[order]
            model.fit(x, y, validation_split=0.1, epochs=epochs, batch_size=32, verbose=0)
            held = x.nbytes
        else:
            ds = load_dataset(root, size)  # no cache: decoding is part of the cost
            order = np.random.default_rng(0).permutation(len(ds.labels))
            cut = int(0.9 * len(order))
            tr, va = order[:cut], order[cut:]
            model.fit(make_batches(ds.images[tr], ds.labels[tr], 4, 32, shuffle=True),
                      validation_data=make_batches(ds.images[va], ds.labels[va], 4, 32), epochs=epochs, verbose=0)
            held = ds.images.nbytes
        seconds = time.perf_counter() - start
    return {"way": way, "seconds": seconds, "dataset_mb": held / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(backbone: str, size: int, epochs: int) -> dict:
    ways = {}
    for way in ("study", "ours"):
        out = subprocess.run([sys.executable, __file__, "--one", way, "--backbone", backbone, "--size", str(size),
                              "--epochs", str(epochs)], capture_output=True, text=True, check=True)
        ways[way] = json.loads(out.stdout.strip().splitlines()[-1])
    s, o = ways["study"], ways["ours"]
    return {"benchmark": "against the study's float32 + validation_split way", "backbone": backbone,
            "image_size": size, "epochs": epochs, "ways": ways, "time_ratio_ours_vs_study": o["seconds"] / s["seconds"],
            "dataset_memory_ratio": o["dataset_mb"] / s["dataset_mb"], "peak_rss_ratio": o["peak_rss_mb"] / s["peak_rss_mb"],
            "goal": "time ratio <= 1, dataset memory <= 1/3",
            "met": o["seconds"] <= s["seconds"] and o["dataset_mb"] <= s["dataset_mb"] / 3, "meta": meta()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--one", choices=["study", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one_way(a.one, a.backbone, a.size, a.epochs)))
        return 0
    emit(run(a.backbone, a.size, a.epochs), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
