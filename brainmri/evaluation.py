"""Test-set evaluation: reports per fold and for the fold ensemble, calibration, bootstrap intervals,
label-error candidates. Every number here is computed from a predictions table, with scikit-learn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from .errors import UserError
from .metrics import bootstrap_ci, calibration, class_report, per_plane_accuracy
from .predictions import Predictions, write_predictions


def class_report_markdown(report: dict, title: str) -> str:
    """The report as a Markdown table laid out like scikit-learn's text report."""
    lines = [f"**{title}**", "", "| | precision | recall | f1-score | support |", "|---|---|---|---|---|"]
    for name, row in report.items():
        if name == "accuracy":
            total = int(report["macro avg"]["support"])
            lines.append(f"| accuracy | | | {row:.4f} | {total} |")
        else:
            if name == "macro avg" and "classes" in row:
                name = f"macro avg (over the {row['classes']} classes present)"
            lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1-score']:.4f} | "
                         f"{int(row['support'])} |")
    return "\n".join(lines) + "\n"


def write_class_report(report: dict, folder: Path, stem: str, title: str) -> None:
    """<stem>.json, .csv and .md."""
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (folder / f"{stem}.md").write_text(class_report_markdown(report, title))
    with open(folder / f"{stem}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1-score", "support"])
        for name, row in report.items():
            if name == "accuracy":
                w.writerow(["accuracy", "", "", row, report["macro avg"]["support"]])
            else:
                w.writerow([name, row["precision"], row["recall"], row["f1-score"], row["support"]])


def write_intervals_csv(path: Path, ci: dict) -> None:
    """confidence_intervals.csv: each metric with its image-bootstrap and group-bootstrap 95% intervals."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value", "ci95_low_groups", "ci95_high_groups", "ci95_low_images", "ci95_high_images",
                    "groups", "images", "rounds"])
        for m in ("accuracy", "macro_f1"):
            w.writerow([m, ci[m], *ci[f"{m}_ci95_groups"], *ci[f"{m}_ci95_images"], ci["groups"], ci["images"],
                        ci["rounds"]])


def label_error_candidates(paths, labels, probs, classes, threshold: float = 0.9) -> list[dict]:
    """Images whose out-of-fold model gives another class at least `threshold`, most confident first."""
    rows = []
    for path, y, p in zip(paths, labels, probs):
        other = int(np.argmax(np.where(np.arange(len(p)) == y, -1, p)))
        if p[other] >= threshold:
            rows.append({"path": path, "label": classes[y], "suggested": classes[other],
                         "p_suggested": float(p[other]), "p_label": float(p[y])})
    return sorted(rows, key=lambda r: -r["p_suggested"])


def check_classes(model_classes, data_classes, where: str) -> None:
    """A model can be evaluated on a folder whose classes are a subset of its own."""
    unknown = sorted(set(data_classes) - set(model_classes))
    if unknown:
        raise UserError(f"classes {unknown} in {where} are not classes of the model ({list(model_classes)})")


def find_fold_models(run_dir: Path) -> tuple[dict[int, Path], list[str]]:
    """Best models of the finished folds, and a note for each fold folder that is not finished."""
    models, notes = {}, []
    for fold_dir in sorted(run_dir.glob("fold*")):
        if not fold_dir.name[4:].isdigit():
            continue
        k = int(fold_dir.name[4:])
        if (fold_dir / "done.json").is_file() and (fold_dir / "best.keras").is_file():
            models[k] = fold_dir / "best.keras"
        else:
            notes.append(f"fold {k} is unfinished (no done.json or best.keras): left out")
    return models, notes


def duplicate_flags_from_splits(splits: dict, test_paths: list[str], folds: list[int]) -> np.ndarray:
    """Whether each test image shares a near-duplicate group with a training image of the given folds."""
    roles, groups = splits["roles"], splits["groups"]
    trained = np.zeros(len(groups), bool)
    for k in folds:
        trained |= roles[:, k] == "train"
    train_groups = set(groups[trained])
    group_of = dict(zip(splits["paths"], groups))
    return np.array([group_of[p] in train_groups for p in test_paths])


def duplicate_flags_external(train_ds, trained: np.ndarray, ext_ds, detector) -> np.ndarray:
    """Whether each image of `ext_ds` is a copy or near-duplicate of an image of `train_ds` that was trained on
    (`trained`: a mask over train_ds; `detector`: the run's duplicates.Detector)."""
    from .data import take
    from .duplicates import copies_in

    return copies_in(take(train_ds, np.flatnonzero(trained)), ext_ds, detector)


def evaluate_test_set(name: str, folder: Path, fold_preds: list[Predictions], has_duplicate: np.ndarray,
                      images: np.ndarray, classes, formats, planes=None, groups=None) -> dict:
    """Reports, figures and headline numbers for one test set; returns what report.md shows. `groups`: the
    near-duplicate group of each image, which the confidence intervals resample (None: one per image)."""
    from . import plots

    folder.mkdir(parents=True)
    ensemble = Predictions("ensemble", fold_preds[0].paths, fold_preds[0].labels,
                           np.mean([p.probs for p in fold_preds], axis=0))
    models = fold_preds + [ensemble] if len(fold_preds) > 1 else fold_preds
    write_predictions(folder / "predictions.csv", classes, models, model=True, near_duplicate=has_duplicate)
    for p in models:
        write_class_report(class_report(p.labels, p.pred, classes), folder, f"report_{p.name}", f"{name}, {p.name}")
        plots.confusion_matrices(p.labels, p.pred, classes, folder / "figures" / f"confusion_{p.name}",
                                 f"{name}: {p.name} ({len(p.labels)} images)", formats)
    best = models[-1]
    plots.roc_pr_curves(best.labels, best.probs, classes, folder / "figures" / "roc_pr", f"{name}: {best.name}", formats)
    calib = calibration(best.labels, best.probs)
    plots.reliability_diagram(calib, folder / "figures" / "reliability", f"{name}: {best.name}", formats)
    wrong = np.flatnonzero(best.pred != best.labels)
    _write_misclassified(folder / "misclassified.csv", best, wrong, classes)
    if len(wrong):
        order = wrong[np.argsort(-best.probs[wrong].max(1))][:36]
        plots.image_gallery(images[order], [f"true {plots.short(classes[best.labels[i]])}\npred {plots.short(classes[best.pred[i]])} "
                                            f"{best.probs[i].max():.2f}" for i in order],
                            folder / "figures" / "misclassified", f"{name}: misclassified by {best.name}", formats=formats)
    fold_acc = [accuracy_score(p.labels, p.pred) for p in fold_preds]
    correct = best.pred == best.labels
    ci = bootstrap_ci(best.labels, best.pred, len(classes), groups=groups)
    write_intervals_csv(folder / "confidence_intervals.csv", ci)
    summary = {"test_set": name, "images": len(best.labels), "model": best.name, "folds": [p.name for p in fold_preds],
               **ci, "ece": calib["ece"],
               "mean_fold_accuracy": float(np.mean(fold_acc)), "fold_accuracy": fold_acc,
               "with_near_duplicate_in_training": {"images": int(has_duplicate.sum()),
                                                   "accuracy": float(correct[has_duplicate].mean()) if has_duplicate.any() else None},
               "without_near_duplicate_in_training": {"images": int((~has_duplicate).sum()),
                                                      "accuracy": float(correct[~has_duplicate].mean()) if (~has_duplicate).any() else None},
               "per_plane": per_plane_accuracy(correct, planes), "misclassified": int(len(wrong))}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _write_misclassified(path: Path, p: Predictions, wrong: np.ndarray, classes) -> None:
    """The list gradcam.py --misclassified takes: path, true, predicted, confidence."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "pred", "confidence"])
        for i in wrong:
            w.writerow([p.paths[i], classes[p.labels[i]], classes[p.pred[i]], f"{p.probs[i].max():.4f}"])


def _rel(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path, start)).as_posix()


def write_evaluation_report(out: Path, run_dir: Path | None, sections: list[dict], label_errors: list[dict] | None,
                            notes: list[str]) -> Path:
    """report.md: the whole run on one page, in reading order, linking every table and figure."""
    lines = [f"# Evaluation of `{run_dir or out}`", ""]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    if run_dir and (run_dir / "cv_summary.md").is_file():
        lines += ["## Cross-validation (from training)", "", (run_dir / "cv_summary.md").read_text(), ""]
        for fig in sorted((run_dir / "figures").glob("curves_*.png")):
            lines += [f"![{fig.stem}]({_rel(fig, out)})", ""]
    for s in sections:
        folder = out / s["folder"]
        lo, hi = s["accuracy_ci95_groups"]
        flo, fhi = s["macro_f1_ci95_groups"]
        ilo, ihi = s["accuracy_ci95_images"]
        iflo, ifhi = s["macro_f1_ci95_images"]
        resampling = f"resampling {s['groups']} near-duplicate groups"
        dup, clean = s["with_near_duplicate_in_training"], s["without_near_duplicate_in_training"]
        lines += [f"## Test set: {s['test_set']} ({s['images']} images)", "",
                  "| | value |", "|---|---|",
                  f"| accuracy ({s['model']}) | {s['accuracy']:.4f} (95% CI {lo:.4f}-{hi:.4f}, {resampling}) |",
                  f"| macro F1 over the {s['macro_f1_classes']} classes present ({s['model']}) | "
                  f"{s['macro_f1']:.4f} (95% CI {flo:.4f}-{fhi:.4f}, {resampling}) |",
                  f"| mean accuracy of the {len(s['folds'])} fold models | {s['mean_fold_accuracy']:.4f} |",
                  f"| expected calibration error | {s['ece']:.4f} |",
                  f"| accuracy, images with a near-duplicate in training | {format_accuracy(dup)} |",
                  f"| accuracy, images without | {format_accuracy(clean)} |",
                  *(f"| accuracy, {pl} slices | {format_accuracy(v)} |" for pl, v in s.get("per_plane", {}).items()), "",
                  f"The intervals resample whole near-duplicate groups ({s['groups']} groups for {s['images']} "
                  f"images), since copies of one scan are right or wrong together. Resampling single images, as if "
                  f"near-duplicates were independent, gives accuracy {ilo:.4f}-{ihi:.4f} and macro F1 "
                  f"{iflo:.4f}-{ifhi:.4f}: [confidence_intervals.csv]({s['folder']}/confidence_intervals.csv).",
                  "",
                  (folder / f"report_{s['model']}.md").read_text(), "",
                  f"Per-fold reports: {', '.join(f'[{n}](' + s['folder'] + f'/report_{n}.md)' for n in s['folds'])}; "
                  f"every prediction: [predictions.csv]({s['folder']}/predictions.csv); "
                  f"misclassified: [misclassified.csv]({s['folder']}/misclassified.csv).", ""]
        for fig in ("confusion_" + s["model"], "roc_pr", "reliability", "misclassified"):
            if (folder / "figures" / f"{fig}.png").is_file():
                lines += [f"![{fig}]({s['folder']}/figures/{fig}.png)", ""]
    if label_errors is not None:
        lines += ["## Likely label errors (out-of-fold predictions)", "",
                  f"{len(label_errors)} training images that the model which never saw them assigns to another "
                  "class with probability >= 0.9: [label_errors.csv](label_errors.csv), for a person to review.", ""]
        if (out / "figures" / "label_errors.png").is_file():
            lines += ["![label errors](figures/label_errors.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def format_accuracy(part: dict) -> str:
    return "no images" if part["accuracy"] is None else f"{part['accuracy']:.4f} ({part['images']} images)"
