"""Tumor vs no tumor, read as a clinician would: threshold chosen on validation data, then sensitivity,
specificity, predictive values and ROC AUC on the test images (all of them, and those with no copy in
training), and an external folder whose class folders may be called yes/no or tumor/no_tumor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .data import Dataset, load_dataset, negative_class_of, to_binary
from .errors import UserError


def load_external(folder: str | Path, size: int, cache_dir=None) -> Dataset:
    """An external test folder with two class folders (yes/no, tumor/no_tumor, ...), as tumor=1 / no tumor=0."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"external test folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) != 2:
        raise UserError(f"external test folder {folder} must hold two class folders, tumor and no tumor (e.g. yes/ "
                        f"and no/); found {classes}")
    ds = load_dataset(folder, size, tuple(classes), cache_dir)
    return to_binary(ds, negative_class_of(ds.classes))


def choose_threshold(labels: np.ndarray, p_tumor: np.ndarray) -> float:
    """The threshold on P(tumor) with the largest Youden index (sensitivity + specificity - 1), from the
    validation predictions; ties go to the threshold nearest 0.5."""
    if len(set(labels.tolist())) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, p_tumor)
    j = tpr - fpr
    best = np.flatnonzero(j == j.max())
    t = thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]]
    return float(min(max(t, 1e-6), 1.0))


def binary_metrics(labels: np.ndarray, p_tumor: np.ndarray, threshold: float) -> dict:
    """Counts and rates at `threshold` (tumor when P(tumor) >= threshold), and the ROC AUC."""
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


def validation_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold validation labels and P(tumor), pooled over the finished folds."""
    labels, probs = [], []
    for path in sorted(run_dir.glob("fold*/val_predictions.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                labels.append(int(r["true"] == "tumor"))
                probs.append(float(r["p_tumor"]))
    if not labels:
        raise UserError(f"{run_dir} has no validation predictions (fold*/val_predictions.csv)")
    return np.array(labels), np.array(probs)


def write_test_predictions(path: Path, paths, labels, p_tumor, threshold: float, copies) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "p_tumor", "pred", "near_duplicate_in_training"])
        for p, y, pt, c in zip(paths, labels, p_tumor, copies):
            w.writerow([p, "tumor" if y else "no_tumor", f"{pt:.6f}", "tumor" if pt >= threshold else "no_tumor", int(c)])


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def report_markdown(task: str, test_name: str, at_threshold: dict, at_half: dict, clean: dict | None,
                    copies: int, notes: list[str]) -> str:
    rows = [("images (tumor / no tumor)", f"{at_threshold['images']} ({at_threshold['tumor']} / {at_threshold['no_tumor']})"),
            ("ROC AUC", _fmt(at_threshold["auc"])),
            ("threshold on P(tumor), chosen on validation (Youden)", f"{at_threshold['threshold']:.4f}"),
            ("accuracy at that threshold", _fmt(at_threshold["accuracy"])),
            ("sensitivity (tumors found)", _fmt(at_threshold["sensitivity"])),
            ("specificity (no-tumor scans cleared)", _fmt(at_threshold["specificity"])),
            ("positive / negative predictive value", f"{_fmt(at_threshold['ppv'])} / {_fmt(at_threshold['npv'])}"),
            ("confusion: TP, FN, FP, TN", f"{at_threshold['tp']}, {at_threshold['fn']}, {at_threshold['fp']}, {at_threshold['tn']}"),
            ("accuracy at 0.5 (for comparison)", _fmt(at_half["accuracy"])),
            ("test images with a near-duplicate in training", str(copies))]
    if clean is None and copies:
        rows += [("images without a copy in training", "none: every test image has a copy in training")]
    if clean is not None:
        rows += [("accuracy / sensitivity / specificity, images without a copy in training",
                  f"{_fmt(clean['accuracy'])} / {_fmt(clean['sensitivity'])} / {_fmt(clean['specificity'])} "
                  f"({clean['images']} images)")]
    lines = [f"# Binary task: {task}", "", *(f"> {n}" for n in notes), "", f"## Test set: {test_name}", "",
             "| | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
             "![ROC](figures/roc.png)", "", "Every prediction: [test_predictions.csv](test_predictions.csv); "
             "misclassified: [misclassified.csv](misclassified.csv); Grad-CAM maps of the evidence for 'tumor' in "
             "the misclassified images (fold 0's model, captions at this threshold): `../gradcam/`.", ""]
    return "\n".join(lines)


def write_report(out: Path, task: str, test_name: str, paths, labels, p_tumor, copies, threshold: float,
                 notes: list[str]) -> dict:
    """binary_summary.json, report.md, test_predictions.csv, misclassified.csv and the ROC figure."""
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    copies = np.asarray(copies, bool)
    at_threshold = binary_metrics(labels, p_tumor, threshold)
    at_half = binary_metrics(labels, p_tumor, 0.5)
    clean = binary_metrics(labels[~copies], p_tumor[~copies], threshold) if copies.any() and (~copies).any() else None
    summary = {"task": task, "test_set": test_name, "at_validation_threshold": at_threshold, "at_0.5": at_half,
               "without_copies_in_training": clean, "near_duplicates_in_training": int(copies.sum()), "notes": notes}
    (out / "binary_summary.json").write_text(json.dumps(summary, indent=2))
    write_test_predictions(out / "test_predictions.csv", paths, labels, p_tumor, threshold, copies)
    wrong = np.flatnonzero((p_tumor >= threshold).astype(int) != labels)
    with open(out / "misclassified.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "pred", "p_tumor"])
        for i in wrong:
            w.writerow([paths[i], "tumor" if labels[i] else "no_tumor", "no_tumor" if labels[i] else "tumor",
                        f"{p_tumor[i]:.4f}"])
    if at_threshold["auc"] is not None:
        plots.binary_roc(labels, p_tumor, threshold, out / "figures" / "roc", f"{task}: {test_name}")
    (out / "report.md").write_text(report_markdown(task, test_name, at_threshold, at_half, clean, int(copies.sum()),
                                                   notes))
    return summary
