"""Tumor vs no tumor, read as a clinician would: threshold chosen on validation data, then sensitivity,
specificity, predictive values and ROC AUC on the test images (all of them, and those with no copy in
training), and an external folder whose class folders may be called yes/no or tumor/no_tumor.

Thresholds. A threshold is chosen on the outputs it will be applied to, from images the model never trained
on. Each fold model gets its own (Youden, on its own validation images) and is scored at it on the test images:
the per-fold rows are the honest figures for "one model with a validation-chosen threshold". The fold
ensemble (mean P(tumor)) has no such outputs to choose on: every validation image trained the other folds, and
the pooled single-model outputs are distributed differently from their mean. So the ensemble is cut at the
mean of the fold thresholds, which calls a tumor exactly when the fold models' margins above their own
thresholds, p_k - t_k, average to >= 0: no threshold is tuned on ensemble outputs.

A threshold does not transfer across sources: on another scanner or preprocessing, P(tumor) is distributed
differently. (Measured on an external yes/no folder: the validation threshold 0.87 found 8% of its tumors,
0.5 found 39%.) Reports on an external folder say so and show both operating points side by side.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from .atomic import write_atomic
from .config import Config
from .data import BINARY_CLASSES, Dataset, negative_class_of, skipped_phrase, write_skipped
from .errors import UserError
from .metrics import binary_metrics
from .predictions import predict, read_predictions
from .runs import find_fold_models, open_fold_model, write_whole
from .testsets import TestSet, external_test_set, own_test_set, trained_images

log = logging.getLogger("brainmri")


TASK_FILE = "binary_task.json"  # in the run folder: the task and the external folder it is tested on


def task_record(task: str, external: str | None) -> dict:
    """What TASK_FILE holds for a run of `task` tested on `external` (None: its own test images)."""
    return {"task": task, "external_test": str(Path(external).resolve()) if external else None}


def read_task(run: Path) -> dict:
    """The run's TASK_FILE ({} where there is none: a run begun before it was written)."""
    path = run / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def check_task(run: Path, record: dict) -> None:
    """Refuse to go on with a run folder (--resume, a --run-dir used again) of another task, or tested on another
    external folder than `record`'s: its report would be replaced by one on other images. Checked before
    anything is written."""
    saved = read_task(run) or record
    if saved.get("task") != record["task"]:
        raise UserError(f"{run} is a run of task '{saved.get('task')}', not '{record['task']}'")
    if saved.get("external_test") != record["external_test"]:
        raise UserError(f"{run} was tested on the external folder {saved.get('external_test')}, not "
                        f"{record['external_test']}: give that folder, or train a new run")


GRADCAM_LIMIT = 32  # maps of at most this many misclassified test images, unless --gradcam-limit says otherwise


def gradcam_limit(given: int | None, run: Path | None) -> int:
    """--gradcam-limit as given, else the one the run recorded (a resume continues as it started), else
    GRADCAM_LIMIT."""
    if given is not None:
        return given
    recorded = read_task(run).get("gradcam_limit") if run is not None else None
    return GRADCAM_LIMIT if recorded is None else int(recorded)


def record_task(run: Path, record: dict) -> None:
    """Write TASK_FILE (a run begun before it existed gets it on its first resume); what is added later: the
    folder of the task's Grad-CAM maps ("gradcam"), once they are drawn."""
    if not (run / TASK_FILE).is_file() or record.get("gradcam"):
        write_atomic(run / TASK_FILE, json.dumps(record, indent=2))


def check_external(folder: str | Path) -> None:
    """The task's external folder holds exactly two class folders (yes/ and no/, tumor/ and no_tumor/, ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"external test folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) != 2:
        raise UserError(f"external test folder {folder} must hold two class folders, tumor and no tumor (e.g. yes/ "
                        f"and no/); found {classes}")
    negative_class_of(classes)  # one of them must name the no-tumor class


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


def _read_validation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A fold's validation labels (tumor 1) and P(tumor), from its predictions table."""
    table = read_predictions(path)[""]
    tumor = table["classes"].index("tumor")
    return (table["labels"] == tumor).astype(int), table["probs"][:, tumor]


def validation_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold validation labels and P(tumor), pooled over the finished folds."""
    per_fold = [_read_validation(p) for p in sorted(run_dir.glob("fold*/val_predictions.csv"))]
    if not per_fold:
        raise UserError(f"{run_dir} has no validation predictions (fold*/val_predictions.csv)")
    return np.concatenate([y for y, _ in per_fold]), np.concatenate([p for _, p in per_fold])


def fold_thresholds(run_dir: Path) -> dict[int, float]:
    """Each fold model's threshold, chosen on its own validation predictions (see the module docstring)."""
    out = {int(p.parent.name[4:]): choose_threshold(*_read_validation(p))
           for p in sorted(run_dir.glob("fold*/val_predictions.csv")) if p.parent.name[4:].isdigit()}
    if not out:
        raise UserError(f"{run_dir} has no validation predictions (fold*/val_predictions.csv)")
    return out


def write_test_predictions(path: Path, paths, labels, p_tumor, threshold: float, copies,
                           fold_p: dict[int, np.ndarray] | None = None) -> None:
    """One row per image: the ensemble's P(tumor) and call, then each fold model's P(tumor)."""
    fold_p = fold_p or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "p_tumor", "pred", "near_duplicate_in_training",
                    *[f"p_tumor_fold{k}" for k in fold_p]])
        for i, (p, y, pt, c) in enumerate(zip(paths, labels, p_tumor, copies)):
            w.writerow([p, "tumor" if y else "no_tumor", f"{pt:.6f}", "tumor" if pt >= threshold else "no_tumor",
                        int(c), *[f"{q[i]:.6f}" for q in fold_p.values()]])


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


TRANSFER_WARNING = (
    "**A threshold does not transfer across sources.** These images come from another source than the training "
    "data; the model's P(tumor) is distributed differently there, so the threshold chosen on validation images of "
    "the training source can sit far from a useful one. Both operating points are shown side by side: where they "
    "differ much, trust neither. The ROC AUC judges the ranking alone; to use the model on this source, choose a "
    "threshold on labelled images from it.")


def _side_by_side(at_t: dict, at_half: dict) -> list[str]:
    """The metrics at the validation threshold and at 0.5, as table rows."""
    def both(key):
        return f"{_fmt(at_t[key])} | {_fmt(at_half[key])}"

    def confusion(m):
        return f"{m['tp']}, {m['fn']}, {m['fp']}, {m['tn']}"

    return [f"| | at the validation threshold ({at_t['threshold']:.4f}) | at 0.5 |", "|---|---|---|",
            f"| accuracy | {both('accuracy')} |", f"| sensitivity (tumors found) | {both('sensitivity')} |",
            f"| specificity (no-tumor scans cleared) | {both('specificity')} |",
            f"| positive predictive value | {both('ppv')} |", f"| negative predictive value | {both('npv')} |",
            f"| confusion: TP, FN, FP, TN | {confusion(at_t)} | {confusion(at_half)} |"]


def _per_fold_table(per_fold: list[dict]) -> list[str]:
    """Each fold model on the test images at its own validation threshold (and at 0.5)."""
    lines = ["| fold | its validation threshold | accuracy | sensitivity | specificity | sensitivity at 0.5 | "
             "specificity at 0.5 |", "|---|---|---|---|---|---|---|"]
    for r in per_fold:
        m, h = r["at_validation_threshold"], r["at_0.5"]
        lines.append(f"| {r['fold']} | {r['threshold']:.4f} | {_fmt(m['accuracy'])} | {_fmt(m['sensitivity'])} | "
                     f"{_fmt(m['specificity'])} | {_fmt(h['sensitivity'])} | {_fmt(h['specificity'])} |")
    mean = _mean_of_folds(per_fold)
    lines.append(f"| mean | | {_fmt(mean['accuracy'])} | {_fmt(mean['sensitivity'])} | "
                 f"{_fmt(mean['specificity'])} | | |")
    return lines


def binary_report_markdown(task: str, test_name: str, summary: dict) -> str:
    at_threshold, clean, copies = summary["at_validation_threshold"], summary["without_copies_in_training"], \
        summary["near_duplicates_in_training"]
    rows = [("images (tumor / no tumor)", f"{at_threshold['images']} ({at_threshold['tumor']} / {at_threshold['no_tumor']})"
             + (f"; {skipped_phrase(summary['skipped_files'])}: [skipped.csv](skipped.csv)"
                if summary.get("skipped_files") else "")),
            ("ROC AUC (fold ensemble)", _fmt(at_threshold["auc"])),
            ("test images with a near-duplicate in training", str(copies))]
    if clean is None and copies:
        rows += [("images without a copy in training", "none: every test image has a copy in training")]
    if clean is not None:
        rows += [("accuracy / sensitivity / specificity at the validation threshold, images without a copy in training",
                  f"{_fmt(clean['accuracy'])} / {_fmt(clean['sensitivity'])} / {_fmt(clean['specificity'])} "
                  f"({clean['images']} images)")]
    lines = [f"# Binary task: {task}", "", *(f"> {n}" for n in summary["notes"]), "", f"## Test set: {test_name}", "",
             *([f"> {TRANSFER_WARNING}", ""] if summary["other_source"] else []),
             "| | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
             f"**Fold ensemble** (mean P(tumor) of the fold models), cut at {summary['threshold_rule']}:", "",
             *_side_by_side(at_threshold, summary["at_0.5"]), "",
             "**Each fold model** at the threshold chosen on its own validation images:", "",
             *_per_fold_table(summary["per_fold"]), "",
             "![ROC](figures/roc.png)", "", "Every prediction: [test_predictions.csv](test_predictions.csv); "
             "misclassified: [misclassified.csv](misclassified.csv); Grad-CAM maps of the evidence for 'tumor' in "
             "the misclassified images (the ensemble's misclassified; maps of the first fold's model, captioned at that model's own threshold): `../gradcam/`.", ""]
    return "\n".join(lines)


THRESHOLD_RULE = ("the mean of the fold models' own validation thresholds (a tumor when their margins above their "
                  "own thresholds average to >= 0; no threshold is tuned on ensemble outputs, which have no "
                  "out-of-fold validation values)")


def write_binary_report(out: Path, task: str, test_name: str, paths, labels, fold_p: dict[int, np.ndarray], copies,
                        thresholds: dict[int, float], notes: list[str], other_source: bool = False,
                        skipped: list[tuple[str, str]] = ()) -> dict:
    """binary_summary.json, report.md, test_predictions.csv, misclassified.csv and the ROC figure, for the
    fold models' P(tumor) on the test images (`fold_p`) and their own validation thresholds (`thresholds`);
    skipped.csv: the files of an external test folder that were not used (`skipped`)."""
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    copies = np.asarray(copies, bool)
    p_tumor = np.mean(list(fold_p.values()), axis=0)
    threshold = float(np.mean([thresholds[k] for k in fold_p]))
    at_threshold = binary_metrics(labels, p_tumor, threshold)
    clean = binary_metrics(labels[~copies], p_tumor[~copies], threshold) if copies.any() and (~copies).any() else None
    per_fold = [{"fold": k, "threshold": thresholds[k],
                 "at_validation_threshold": binary_metrics(labels, p, thresholds[k]),
                 "at_0.5": binary_metrics(labels, p, 0.5)} for k, p in fold_p.items()]
    summary = {"task": task, "test_set": test_name, "threshold_rule": THRESHOLD_RULE, "other_source": other_source,
               "at_validation_threshold": at_threshold, "at_0.5": binary_metrics(labels, p_tumor, 0.5),
               "per_fold": per_fold, "per_fold_mean": _mean_of_folds(per_fold),
               "without_copies_in_training": clean, "near_duplicates_in_training": int(copies.sum()), "notes": notes,
               "skipped_files": len(skipped)}
    if skipped:
        write_skipped(out / "skipped.csv", list(skipped))
    (out / "binary_summary.json").write_text(json.dumps(summary, indent=2))
    write_test_predictions(out / "test_predictions.csv", paths, labels, p_tumor, threshold, copies, fold_p)
    wrong = np.flatnonzero((p_tumor >= threshold).astype(int) != labels)
    with open(out / "misclassified.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "pred", "p_tumor"])
        for i in wrong:
            w.writerow([paths[i], "tumor" if labels[i] else "no_tumor", "no_tumor" if labels[i] else "tumor",
                        f"{p_tumor[i]:.4f}"])
    if at_threshold["auc"] is not None:
        plots.binary_roc(labels, p_tumor, threshold, out / "figures" / "roc", f"{task}: {test_name}")
    (out / "report.md").write_text(binary_report_markdown(task, test_name, summary))
    return summary


def _mean_of_folds(per_fold: list[dict]) -> dict:
    """Mean over the fold models of accuracy, sensitivity and specificity at their own thresholds."""
    out = {}
    for key in ("accuracy", "sensitivity", "specificity"):
        vals = [r["at_validation_threshold"][key] for r in per_fold if r["at_validation_threshold"][key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def evaluate_task(task: str, run: Path, cfg: Config, ds: Dataset,
                  external: str | None = None) -> tuple[dict, list[str]]:
    """Score a trained task run on its test set (the run's own, or the external folder): binary/report.md
    and the rest (write_binary_report); returns the summary and the files the ensemble got wrong."""
    models, _ = find_fold_models(run)
    ts = task_test_set(task, run, cfg, ds, sorted(models), external)
    fold_p = fold_p_tumor(models, ts.images, cfg.batch_size)
    name = test_set_name(task, cfg, external)
    _, summary = write_whole(run / "binary", lambda out: write_binary_report(
        out, task, name, ts.paths, ts.labels, fold_p, ts.trained_copy, fold_thresholds(run), run_notes(cfg),
        other_source=task == "external", skipped=ts.skipped), replace=True)
    m = summary["at_validation_threshold"]
    log.info("binary task %s on %s: AUC %s, accuracy %.4f, sensitivity %s, specificity %s at threshold %.3f; "
             "%d test images have a near-duplicate in training", task, name, "n/a" if m["auc"] is None else
             f"{m['auc']:.4f}", m["accuracy"], m["sensitivity"], m["specificity"], m["threshold"],
             summary["near_duplicates_in_training"])
    p = np.mean(list(fold_p.values()), axis=0)
    wrong = [str(ts.root / ts.paths[i]) for i in range(len(ts.labels)) if int(p[i] >= m["threshold"]) != ts.labels[i]]
    return summary, wrong


def task_test_set(task: str, run: Path, cfg: Config, ds: Dataset, folds: list[int], external=None) -> TestSet:
    """The external folder (task external), else the run's own test images."""
    if task == "external":
        return external_test_set(external, cfg.image_size, BINARY_CLASSES, cfg, trained_images(run, ds),
                                 cfg.cache_dir, grouped=False)
    return own_test_set(run, ds, folds)


def fold_p_tumor(models: dict[int, Path], images: np.ndarray, batch_size: int) -> dict[int, np.ndarray]:
    """Each fold model's P(tumor) for the images."""
    from .models import load_model

    return {k: predict(load_model(p, compile=False), images, batch_size)[:, 1] for k, p in sorted(models.items())}


def test_set_name(task: str, cfg: Config, external: str | None) -> str:
    """The test set as report.md names it."""
    return {"external": f"external folder {external}",
            "split": f"{cfg.test_fraction:.0%} hold-out ({cfg.split} split)",
            "external-only": f"{cfg.test_fraction:.0%} hold-out of {cfg.data_dir} ({cfg.split} split)",
            "planes": f"{'+'.join(cfg.test_planes)} slices (trained on {'+'.join(cfg.train_planes)})"}[task]


def run_notes(cfg: Config) -> list[str]:
    return [f"{cfg.backbone}, {cfg.image_size} px, weights {cfg.weights}, {cfg.epochs} epochs, {cfg.folds}-fold "
            f"ensemble, class weights {cfg.class_weight}; each fold model's threshold chosen on its own validation "
            "predictions, the ensemble's is their mean"]


def explain_misclassified(run: Path, files: list[str], limit: int) -> Path:
    """Grad-CAM maps of the evidence for 'tumor' in (at most `limit` of) the misclassified test images, by the
    first fold's model, captioned at that model's own threshold, into <run>/gradcam/."""
    from . import explain
    from .models import load_model

    fold = min(find_fold_models(run)[0])
    trained = open_fold_model(run, fold)
    request = explain.Request(class_name="tumor", threshold=fold_thresholds(run)[fold], limit=limit)
    return explain.gradcam(trained, load_model(trained.models[fold], compile=False), request, files[:limit])[0]
