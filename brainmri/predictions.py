"""Predictions: a model's class probabilities for an array of images, and the predictions table, written
and read here only. One row per image (and model):

    path, [subset,] true, pred, p_<class> for every class, [model,] [near_duplicate_in_training]

fold*/val_predictions.csv and test_predictions.csv (training: with subset) and evaluation*/<set>/predictions.csv
(evaluate.py: every fold model and the ensemble, with model and near_duplicate_in_training) are such tables.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NEAR_DUPLICATE = "near_duplicate_in_training"  # 1: the image has a near-duplicate that the model trained on


@dataclass
class Predictions:
    """Probabilities of one model (a fold or the ensemble) on a set of images."""

    name: str  # "fold0", ..., "ensemble"
    paths: list[str]
    labels: np.ndarray  # true class index
    probs: np.ndarray  # (N, C)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)


def predict(model, images: np.ndarray, batch_size: int, tta: bool = False) -> np.ndarray:
    """Class probabilities (the compiled forward pass, brainmri.backend); with tta, the mean over the image
    and its left-right mirror."""
    from . import backend
    from .models import class_probabilities

    probs = backend.predict(model, images, batch_size)
    if tta:
        mirrored = np.ascontiguousarray(images[:, :, ::-1])
        probs = (probs + backend.predict(model, mirrored, batch_size)) / 2
    return class_probabilities(probs)


def write_predictions(path: Path, classes, preds: list[Predictions], subsets=None, model: bool = False,
                      near_duplicate=None) -> None:
    """The predictions table of `preds` (every model over the same images): with a subset column when
    `subsets` are given, a model column when `model`, and the near-duplicate flags when given."""
    header = ["path", *(["subset"] if subsets is not None else []), "true", "pred", *[f"p_{c}" for c in classes],
              *(["model"] if model else []), *([NEAR_DUPLICATE] if near_duplicate is not None else [])]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for p in preds:
            for i, (path_, y, probs) in enumerate(zip(p.paths, p.labels, p.probs)):
                w.writerow([path_, *([subsets[i]] if subsets is not None else []), classes[y],
                            classes[int(probs.argmax())], *[f"{x:.6f}" for x in probs], *([p.name] if model else []),
                            *([int(near_duplicate[i])] if near_duplicate is not None else [])])


def read_predictions(path: Path) -> dict[str, dict]:
    """A predictions table back, per model ("" for a table without a model column): classes, paths, labels
    and pred (class indices; -1 where pred is empty), probs (N, C), and every other column as strings."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    classes = [k[2:] for k in rows[0] if k.startswith("p_")]
    index = {c: i for i, c in enumerate(classes)}
    others = [k for k in rows[0] if k not in ("path", "true", "pred", "model") and not k.startswith("p_")]
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.get("model", ""), []).append(r)
    return {name: {"classes": classes, "paths": [r["path"] for r in part],
                   "labels": np.array([index[r["true"]] for r in part]),
                   "pred": np.array([index.get(r["pred"], -1) for r in part]),
                   "probs": np.array([[float(r[f"p_{c}"]) for c in classes] for r in part]).reshape(-1, len(classes)),
                   **{k: [r[k] for r in part] for k in others}}
            for name, part in out.items()}
