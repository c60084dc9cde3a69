"""Cross-validation: every fold in turn (or one per job), then the summary over whatever folds are done:
cv_summary.{json,md,csv} and the training curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import plots
from .config import Config
from .data import Dataset
from .metrics import summarise_folds
from .atomic import write_atomic
from .training import device_settings, read_history, train_fold

log = logging.getLogger("brainmri")


def run_folds(cfg: Config, ds: Dataset, roles: np.ndarray, run_dir: Path, folds=None) -> dict | None:
    """Train the given folds (default all; finished ones are skipped), then the CV summary."""
    settings = device_settings(cfg)
    for fold in range(cfg.folds) if folds is None else folds:
        train_fold(cfg, ds, roles, fold, run_dir, settings)
    return aggregate(run_dir, cfg)


def finished_folds(run_dir: Path) -> dict[int, dict]:
    """Results of every fold whose done.json exists (half-written folds have none)."""
    out = {}
    for path in sorted(run_dir.glob("fold*/done.json")):
        row = json.loads(path.read_text())
        out[int(row["fold"])] = row
    return out


def aggregate(run_dir: Path, cfg: Config) -> dict | None:
    """Build the CV summary and figures from whatever folds are done."""
    done = finished_folds(run_dir)
    if not done:
        log.warning("no finished folds in %s yet", run_dir)
        return None
    summary = summarise_folds(done)
    folds = cfg.folds
    summary["complete"] = len(done) == folds
    summary["folds_expected"] = folds
    write_summary(summary, run_dir)
    histories = {k: read_history(run_dir / f"fold{k}" / "history.csv") for k in done}
    plots.training_curves(histories, run_dir / "figures", cfg.figure_formats)
    missing = sorted(set(range(folds)) - set(done))
    log.info("CV summary over %d/%d folds%s:\n%s", len(done), folds,
             f" (missing {missing})" if missing else "", (run_dir / "cv_summary.md").read_text())
    return summary


def summary_markdown(summary: dict) -> str:
    """A Markdown table: one row per fold, then mean and std."""
    cols = [k for k in ("val_loss", "val_accuracy", "val_precision", "val_recall", "val_f1", "test_loss",
                        "test_accuracy", "test_f1", "epoch") if k in summary["mean"] or k == "epoch"]
    lines = ["| fold | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for fold, row in summary["per_fold"].items():
        lines.append(f"| {fold} | " + " | ".join(_fmt(row.get(c), c) for c in cols) + " |")
    lines.append("| **mean** | " + " | ".join(_fmt(summary["mean"].get(c), c) for c in cols) + " |")
    lines.append("| std | " + " | ".join(_fmt(summary["std"].get(c), c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v, key: str) -> str:
    if v is None:
        return ""
    return f"{v:.1f}" if key == "epoch" else f"{v:.4f}"


def write_summary(summary: dict, folder: Path) -> None:
    """cv_summary.json, .csv and .md (atomically: fold jobs may aggregate at the same time)."""
    write_atomic(folder / "cv_summary.json", json.dumps(summary, indent=2))
    write_atomic(folder / "cv_summary.md", summary_markdown(summary))
    keys = sorted(summary["mean"])
    rows = [",".join(["fold", *keys])]
    rows += [",".join([str(f)] + [f"{row.get(k, '')}" for k in keys]) for f, row in summary["per_fold"].items()]
    rows += [",".join(["mean"] + [f"{summary['mean'][k]}" for k in keys]),
             ",".join(["std"] + [f"{summary['std'][k]}" for k in keys])]
    write_atomic(folder / "cv_summary.csv", "\n".join(rows) + "\n")
