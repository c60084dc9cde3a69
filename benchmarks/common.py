"""What every benchmark shares: the data it runs on, medians after a warm-up, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "brain-tumor-classification-mri"
RESULTS = Path(__file__).resolve().parent / "results"


def data_root(tmp: Path, per_class: int = 200) -> Path:
    """The real dataset when present, else a synthetic one written into `tmp`."""
    if REAL.is_dir():
        return REAL
    from brainmri.synthetic import write_synthetic

    root = tmp / "synthetic"
    if not root.is_dir():
        write_synthetic(root, per_class=per_class, size=256)
    return root


def median_seconds(fn, reps: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median and all times of `reps` calls after `warmup` untimed calls (tracing is not throughput)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def interleaved_medians(fns: dict, reps: int) -> dict[str, tuple[float, list[float]]]:
    """median_seconds of several functions, their repetitions taken in turn (a, b, a, b, ...), so that a
    shared machine's load drifting during the run falls on all of them alike, not on whichever ran last."""
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: (float(np.median(v)), v) for k, v in times.items()}


def meta() -> dict:
    import keras

    from brainmri import backend

    gpus = backend.gpu_names()
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
            **backend.versions(), "device": ", ".join(gpus) if gpus else "CPU", "date": time.strftime("%Y-%m-%d")}


def emit(result: dict, json_path: str | None) -> None:
    """Print the result, and write it where run_all.py asked."""
    text = json.dumps(result, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text)
