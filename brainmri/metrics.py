"""Macro precision, recall and F1 as Keras metrics (backend-neutral), and the CV summary."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

@keras.saving.register_keras_serializable(package="brainmri")
class MacroMetric(keras.metrics.Metric):
    """Macro-averaged precision, recall or F1 over classes, from a running confusion matrix.

    The study monitored "average" precision and recall; Keras' own Precision/Recall are binary,
    so a 4-class model needs this. Classes absent from both labels and predictions are left out.
    """

    def __init__(self, num_classes: int, kind: str = "f1", name: str | None = None, **kwargs):
        super().__init__(name=name or kind, **kwargs)
        self.num_classes, self.kind = num_classes, kind
        self.matrix = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        n = self.num_classes
        true, pred = ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)
        rows = ops.one_hot(true, n)
        if sample_weight is not None:  # weighted counts, as Keras' accuracy weighs (under weighted_metrics=)
            rows = rows * ops.reshape(ops.cast(sample_weight, rows.dtype), (-1, 1))
        counts = ops.matmul(ops.transpose(rows), ops.one_hot(pred, n))
        self.matrix.assign(self.matrix + ops.cast(counts, self.dtype))

    def result(self):
        m = self.matrix
        tp = ops.diagonal(m)
        precision = ops.divide_no_nan(tp, ops.sum(m, axis=0))
        recall = ops.divide_no_nan(tp, ops.sum(m, axis=1))
        per_class = {"precision": precision, "recall": recall,
                     "f1": ops.divide_no_nan(2 * precision * recall, precision + recall)}[self.kind]
        present = ops.cast((ops.sum(m, axis=0) + ops.sum(m, axis=1)) > 0, self.dtype)
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def reset_state(self):
        self.matrix.assign(ops.zeros(self.matrix.shape, dtype=self.dtype))  # zeros_like(Variable) fails on JAX

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "kind": self.kind}


def macro_metrics(num_classes: int) -> list:
    return ["accuracy"] + [MacroMetric(num_classes, k) for k in ("precision", "recall", "f1")]


def best_epoch_row(history: list[dict], monitor: str = "val_accuracy") -> dict:
    """The epoch the checkpoint kept: the first with the best monitored value."""
    return max(history, key=lambda r: (r[monitor], -r["epoch"]))


def summarise_folds(per_fold: dict[int, dict]) -> dict:
    """Mean and std over folds of each validation and test metric."""
    keys = sorted({k for row in per_fold.values() for k in row if isinstance(row[k], (int, float)) and k != "epoch"})
    out = {"folds": sorted(per_fold), "per_fold": per_fold, "mean": {}, "std": {}}
    for k in keys:
        vals = np.array([row[k] for row in per_fold.values() if k in row], float)
        out["mean"][k], out["std"][k] = float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


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
    from .runs import write_atomic

    write_atomic(folder / "cv_summary.json", json.dumps(summary, indent=2))
    write_atomic(folder / "cv_summary.md", summary_markdown(summary))
    keys = sorted(summary["mean"])
    rows = [",".join(["fold", *keys])]
    rows += [",".join([str(f)] + [f"{row.get(k, '')}" for k in keys]) for f, row in summary["per_fold"].items()]
    rows += [",".join(["mean"] + [f"{summary['mean'][k]}" for k in keys]),
             ",".join(["std"] + [f"{summary['std'][k]}" for k in keys])]
    write_atomic(folder / "cv_summary.csv", "\n".join(rows) + "\n")
