"""Benchmark 4: a whole cross-validation run of train.py against the sum of its fit() times. The rest
(loading from cache, hashing, splitting, model building, prediction, plots, saving) is the overhead.

    python benchmarks/cv_overhead.py [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import emit, meta

ROOT = Path(__file__).resolve().parents[1]


def run(config: str, overrides: list[str]) -> dict:
    import train
    from brainmri.config import load_config
    from brainmri.pipeline import data_root

    with tempfile.TemporaryDirectory() as tmp:
        sets = [f"output_dir={tmp}/out", f"cache_dir={tmp}/cache", *overrides]
        cfg = load_config(str(ROOT / config), sets)
        data_root(cfg)  # a synthetic set is written once, before the clock starts (it is not part of a run)
        start = time.perf_counter()
        assert train.main(["--config", str(ROOT / config), "--set", *sets]) == 0
        wall = time.perf_counter() - start
        (run_dir,) = (Path(tmp) / "out" / cfg.experiment).iterdir()
        fit = [json.loads(p.read_text())["fit_seconds"] for p in sorted(run_dir.glob("fold*/done.json"))]
    overhead = (wall - sum(fit)) / wall
    return {"benchmark": "whole CV run vs the sum of fit()", "config": config, "overrides": overrides,
            "folds": len(fit), "epochs": cfg.epochs, "image_size": cfg.image_size, "backbone": cfg.backbone,
            "seconds": {"wall": wall, "fit_sum": sum(fit), "fit_per_fold": fit}, "overhead": overhead,
            "goal": "< 0.10", "met": overhead < 0.10, "meta": meta()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--json")
    a = p.parse_args(argv)
    emit(run(a.config, a.set), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
