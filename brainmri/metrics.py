"""Every number computed from labels and predictions, with numpy, scikit-learn and scipy (no Keras): a fold's
scores, the per-class report, bootstrap intervals (over images or near-duplicate groups), Wilson intervals of
a share (of pairs that may share images), calibration, the
tumor-vs-no-tumor rates at a threshold, per-plane accuracy, and the mean and spread over folds.
(The metrics Keras logs while training are brainmri.models.MacroMetric.)"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import (accuracy_score, classification_report, f1_score, log_loss,
                             precision_recall_fscore_support, roc_auc_score)

from .config import PLANES


def score(labels: np.ndarray, probs: np.ndarray, num_classes: int, prefix: str) -> dict:
    """Loss, accuracy and macro precision/recall/F1 (over the classes present in `labels`) with scikit-learn."""
    pred = probs.argmax(1)
    probs = probs / probs.sum(1, keepdims=True)  # float32 softmax sums to 1 only within rounding
    # a class with no image here would count as 0 (sklearn's default averages over labels and predictions)
    p, r, f, _ = precision_recall_fscore_support(labels, pred, labels=np.unique(labels), average="macro",
                                                 zero_division=0)
    return {f"{prefix}_loss": float(log_loss(labels, probs, labels=list(range(num_classes)))),
            f"{prefix}_accuracy": float(accuracy_score(labels, pred)), f"{prefix}_precision": float(p),
            f"{prefix}_recall": float(r), f"{prefix}_f1": float(f)}


def class_report(labels: np.ndarray, pred: np.ndarray, classes) -> dict:
    """scikit-learn's classification report (precision, recall, F1, support per class), class names. Every
    class of the model gets a row, but the macro average is over the classes present in the test labels
    (its "classes" says how many): a class with no test image would count as 0 and halve the macro F1 of a
    2-class external set that is classified without error."""
    report = classification_report(labels, pred, labels=list(range(len(classes))), target_names=list(classes),
                                   output_dict=True, zero_division=0)
    present = np.unique(labels)
    prec, rec, f1, _ = precision_recall_fscore_support(labels, pred, labels=present, average="macro",
                                                       zero_division=0)
    report["macro avg"].update({"precision": float(prec), "recall": float(rec), "f1-score": float(f1),
                                "classes": len(present)})
    return report


def macro_f1_of_confusion(matrices: np.ndarray) -> np.ndarray:
    """Macro F1 of each (..., C, C) confusion matrix (rows true), over the classes present in its labels."""
    tp = np.diagonal(matrices, axis1=-2, axis2=-1)
    true, pred = matrices.sum(-1), matrices.sum(-2)
    f1 = np.divide(2 * tp, true + pred, out=np.zeros(tp.shape), where=(true + pred) > 0)  # = 2PR / (P + R)
    present = true > 0
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


def _resampled_counts(groups: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """(rounds, N): how often each image is drawn when whole groups are drawn with replacement."""
    _, which = np.unique(groups, return_inverse=True)
    g = which.max() + 1
    counts = np.random.default_rng(seed).multinomial(g, np.full(g, 1 / g), size=rounds)
    return counts[:, which]


def _percentile_ci(labels, pred, n_classes: int, groups, rounds: int, seed: int) -> tuple[list, list]:
    """95% percentile intervals of accuracy and macro F1 over `rounds` group resamples, all at once: each
    round's confusion matrix is its draw counts times the one-hot (true, predicted) cell of each image."""
    weights = _resampled_counts(groups, rounds, seed).astype(np.float64)
    cells = np.eye(n_classes * n_classes)[labels * n_classes + pred]
    matrices = (weights @ cells).reshape(rounds, n_classes, n_classes)
    acc = np.trace(matrices, axis1=1, axis2=2) / weights.sum(1)
    return (np.percentile(acc, [2.5, 97.5]).tolist(),
            np.percentile(macro_f1_of_confusion(matrices), [2.5, 97.5]).tolist())


def bootstrap_ci(labels: np.ndarray, pred: np.ndarray, n_classes: int, rounds: int = 2000, seed: int = 0,
                 groups: np.ndarray | None = None) -> dict:
    """Accuracy and macro F1 (over the classes present in `labels`) with 95% percentile bootstrap intervals,
    twice: resampling images (*_ci95_images) and resampling near-duplicate groups (*_ci95_groups, the
    cluster bootstrap). Near-duplicates of one scan are right or wrong together, so only the group interval
    counts them once; without `groups` each image is its own group and the two intervals are the same."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    present = np.unique(labels)
    out = {"accuracy": float(accuracy_score(labels, pred)),
           "macro_f1": float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)),
           "macro_f1_classes": len(present), "images": len(labels), "groups": len(np.unique(groups)),
           "rounds": rounds}
    for kind, g in (("images", np.arange(len(labels))), ("groups", groups)):
        out[f"accuracy_ci95_{kind}"], out[f"macro_f1_ci95_{kind}"] = _percentile_ci(labels, pred, n_classes, g,
                                                                                    rounds, seed)
    return out


def bootstrap_mean_ci(values, groups=None, level: float = 0.95, resamples: int = 2000) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values`, resampling whole groups (else images), so
    near-duplicates count once; None with a single group."""
    _, inv = np.unique(np.arange(len(values)) if groups is None else np.asarray(groups), return_inverse=True)
    if inv.max(initial=0) < 1:
        return None
    sums, counts = np.bincount(inv, np.asarray(values, np.float64)), np.bincount(inv).astype(np.float64)
    res = stats.bootstrap((sums, counts), lambda s, c, axis=-1: s.sum(axis) / c.sum(axis), paired=True,
                          vectorized=True, n_resamples=resamples, confidence_level=level, method="percentile",
                          random_state=0)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilson_interval(successes, groups=None, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the share of successes (one 0/1 per item; (0, 1) for no items). With `groups`
    (items of one group are not independent draws: pairs that share an image, say), at the effective sample
    size of groups whose items always agree, n^2 / sum(group size^2): the largest design effect such groups can
    have, so the interval is conservative, and a success more never lowers its bounds."""
    x = np.asarray(successes, np.float64)
    n = len(x)
    if n == 0:
        return 0.0, 1.0
    effective = float(n)
    if groups is not None:
        sizes = np.unique(np.asarray(groups), return_counts=True)[1].astype(np.float64)
        effective = n * n / float((sizes ** 2).sum())
    share = float(x.mean())
    z = float(stats.norm.ppf(0.5 + level / 2))
    centre = (share + z * z / (2 * effective)) / (1 + z * z / effective)
    half = z / (1 + z * z / effective) * np.sqrt(share * (1 - share) / effective + z * z / (4 * effective ** 2))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error of the top-class confidence, with the per-bin table."""
    conf, correct = probs.max(1), (probs.argmax(1) == labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            gap = abs(correct[sel].mean() - conf[sel].mean())
            ece += sel.mean() * gap
            table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": int(sel.sum()),
                          "accuracy": float(correct[sel].mean()), "confidence": float(conf[sel].mean())})
    return {"ece": float(ece), "bins": table}


def binary_metrics(labels: np.ndarray, p_tumor: np.ndarray, threshold: float) -> dict:
    """Tumor (1) vs no tumor (0): counts and rates at `threshold` (tumor when P(tumor) >= threshold), and the
    ROC AUC."""
    pred = (p_tumor >= threshold).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())

    def ratio(a, b):
        return a / b if b else None

    return {"images": int(len(labels)), "tumor": int(labels.sum()), "no_tumor": int((labels == 0).sum()),
            "threshold": threshold, "accuracy": ratio(tp + tn, len(labels)),
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "auc": float(roc_auc_score(labels, p_tumor)) if len(set(labels.tolist())) == 2 else None,
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def per_plane_accuracy(correct: np.ndarray, planes) -> dict:
    """Accuracy per slice plane, for the images whose plane is known ({} when none is)."""
    planes = np.asarray(planes if planes is not None else [""] * len(correct))
    return {pl: {"images": int((planes == pl).sum()), "accuracy": float(correct[planes == pl].mean())}
            for pl in PLANES if (planes == pl).any()}


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
