"""Test-set evaluation of a trained run (evaluate.py): every fold model and the fold ensemble on each test
set (brainmri.testsets), per-class reports, calibration, group-bootstrap intervals and figures, the out-of-fold
label-error candidates, and report.md linking them all. The numbers themselves come from brainmri.metrics."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from .data import load_resized, skipped_phrase, write_skipped
from .errors import UserError
from .metrics import bootstrap_ci, calibration, class_report, per_plane_accuracy
from .pipeline import data_root, load_data
from .predictions import Predictions, predict, read_predictions, write_predictions
from .runs import Trained
from .testsets import TestSet, external_test_set, own_test_set, trained_images

log = logging.getLogger("brainmri")


def load_models(trained: Trained) -> dict:
    """The fold models, each checked to tell the run's classes apart."""
    from .models import load_model, output_classes

    loaded = {k: load_model(p, compile=False) for k, p in sorted(trained.models.items())}
    for k, m in loaded.items():
        if output_classes(m) != len(trained.classes):
            raise UserError(f"model of fold {k} tells {output_classes(m)} classes apart but the run has "
                            f"{len(trained.classes)}")
    return loaded


def test_sets(trained: Trained, size: int, test_dir: str | None) -> list[TestSet]:
    """The run's own test set (for a run folder) and the external folder `test_dir`, flagged against the
    images the fold models trained on."""
    sets, ds = [], None
    if trained.run is not None:
        ds = load_data(trained.cfg)
        sets.append(own_test_set(trained.run, ds, sorted(trained.models)))
    if test_dir:
        train = trained_images(trained.run, ds) if ds is not None else None
        sets.append(external_test_set(test_dir, size, trained.classes, trained.cfg, train))
    return sets


def evaluate(trained: Trained, loaded: dict, sets: list[TestSet], out: Path, tta: bool = False) -> Path:
    """Reports of every test set, the label-error candidates of a run, and report.md, in `out`."""
    for note in trained.notes:
        log.warning(note)
    notes = trained.notes + ([f"evaluated on folds {sorted(loaded)} only"] if trained.notes else [])
    sections = []
    for ts in sets:
        preds = [Predictions(f"fold{k}", ts.paths, ts.labels, predict(m, ts.images, trained.cfg.batch_size, tta))
                 for k, m in loaded.items()]
        summary = evaluate_test_set(ts, out / ts.name, preds, trained.classes, trained.cfg.figure_formats)
        _log_summary(ts.name, summary)
        sections.append({**summary, "folder": ts.name})
    label_errors = write_label_errors(trained, out) if trained.run else None
    evaluated = trained.run or trained.models[min(trained.models)]  # the run, or the .keras model alone
    return write_evaluation_report(out, trained.run, sections, label_errors, notes, evaluated)


def _log_summary(name: str, summary: dict) -> None:
    log.info("%s: %s accuracy %.4f (95%% CI %.4f-%.4f over %d near-duplicate groups), mean of folds %.4f; with a "
             "near-duplicate in training %s, without %s", name, summary["model"], summary["accuracy"],
             *summary["accuracy_ci95_groups"], summary["groups"], summary["mean_fold_accuracy"],
             format_accuracy(summary["with_near_duplicate_in_training"]),
             format_accuracy(summary["without_near_duplicate_in_training"]))
    if summary["per_plane"]:
        log.info("%s per plane: %s", name, ", ".join(f"{pl} {format_accuracy(v)}"
                                                     for pl, v in summary["per_plane"].items()))


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


def evaluate_test_set(ts: TestSet, folder: Path, fold_preds: list[Predictions], classes, formats) -> dict:
    """Reports, figures and headline numbers for one test set; returns what report.md shows. The confidence
    intervals resample the set's near-duplicate groups (one per image when it has none)."""
    folder.mkdir(parents=True)
    ensemble = Predictions("ensemble", fold_preds[0].paths, fold_preds[0].labels,
                           np.mean([p.probs for p in fold_preds], axis=0))
    models = fold_preds + [ensemble] if len(fold_preds) > 1 else fold_preds
    write_predictions(folder / "predictions.csv", classes, models, model=True, near_duplicate=ts.trained_copy)
    best = models[-1]
    calib = calibration(best.labels, best.probs)
    wrong = np.flatnonzero(best.pred != best.labels)
    _write_misclassified(folder / "misclassified.csv", best, wrong, classes)
    _reports_and_figures(ts, folder, models, calib, wrong, classes, formats)
    ci = bootstrap_ci(best.labels, best.pred, len(classes), groups=ts.groups)
    write_intervals_csv(folder / "confidence_intervals.csv", ci)
    fold_acc = [float(np.mean(p.pred == p.labels)) for p in fold_preds]
    correct = best.pred == best.labels
    summary = {"test_set": ts.name, "images": len(best.labels), "model": best.name,
               "folds": [p.name for p in fold_preds], **ci, "ece": calib["ece"],
               "mean_fold_accuracy": float(np.mean(fold_acc)), "fold_accuracy": fold_acc,
               "with_near_duplicate_in_training": _accuracy_of(correct, ts.trained_copy),
               "without_near_duplicate_in_training": _accuracy_of(correct, ~ts.trained_copy),
               "per_plane": per_plane_accuracy(correct, ts.planes), "misclassified": int(len(wrong)),
               "skipped_files": len(ts.skipped)}
    if ts.skipped:
        write_skipped(folder / "skipped.csv", ts.skipped)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _accuracy_of(correct: np.ndarray, part: np.ndarray) -> dict:
    """Accuracy on the images of `part` (None when there are none)."""
    return {"images": int(part.sum()), "accuracy": float(correct[part].mean()) if part.any() else None}


def _reports_and_figures(ts: TestSet, folder: Path, models: list[Predictions], calib: dict, wrong: np.ndarray,
                         classes, formats) -> None:
    """Per model: the class report and confusion matrix; for the last (the ensemble): ROC/PR curves, the
    reliability diagram and the most confident mistakes."""
    from . import plots

    name, figures, best = ts.name, folder / "figures", models[-1]
    for p in models:
        write_class_report(class_report(p.labels, p.pred, classes), folder, f"report_{p.name}", f"{name}, {p.name}")
        plots.confusion_matrices(p.labels, p.pred, classes, figures / f"confusion_{p.name}",
                                 f"{name}: {p.name} ({len(p.labels)} images)", formats)
    plots.roc_pr_curves(best.labels, best.probs, classes, figures / "roc_pr", f"{name}: {best.name}", formats)
    plots.reliability_diagram(calib, figures / "reliability", f"{name}: {best.name}", formats)
    if len(wrong):
        order = wrong[np.argsort(-best.probs[wrong].max(1))][:36]
        captions = [f"true {plots.short(classes[best.labels[i]])}\npred {plots.short(classes[best.pred[i]])} "
                    f"{best.probs[i].max():.2f}" for i in order]
        plots.image_gallery(ts.images[order], captions, figures / "misclassified",
                            f"{name}: misclassified by {best.name}", formats=formats)


def _write_misclassified(path: Path, p: Predictions, wrong: np.ndarray, classes) -> None:
    """The list gradcam.py --misclassified takes: path, true, predicted, confidence."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "pred", "confidence"])
        for i in wrong:
            w.writerow([p.paths[i], classes[p.labels[i]], classes[p.pred[i]], f"{p.probs[i].max():.4f}"])


def label_error_candidates(paths, labels, probs, classes, threshold: float = 0.9) -> list[dict]:
    """Images whose out-of-fold model gives another class at least `threshold`, most confident first."""
    rows = []
    for path, y, p in zip(paths, labels, probs):
        other = int(np.argmax(np.where(np.arange(len(p)) == y, -1, p)))
        if p[other] >= threshold:
            rows.append({"path": path, "label": classes[y], "suggested": classes[other],
                         "p_suggested": float(p[other]), "p_label": float(p[y])})
    return sorted(rows, key=lambda r: -r["p_suggested"])


def write_label_errors(trained: Trained, out: Path) -> list[dict]:
    """label_errors.csv and a gallery: out-of-fold (validation) predictions that confidently disagree with the
    folder label."""
    from . import plots

    classes = trained.classes
    tables = [read_predictions(f)[""] for f in sorted(trained.run.glob("fold*/val_predictions.csv"))]
    paths = [p for t in tables for p in t["paths"]]
    labels = [y for t in tables for y in t["labels"]]
    probs = np.concatenate([t["probs"] for t in tables]) if tables else np.zeros((0, len(classes)))
    rows = label_error_candidates(paths, labels, probs, classes)
    with open(out / "label_errors.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "suggested", "p_suggested", "p_label"])
        w.writeheader()
        w.writerows(rows)
    shown = rows[:24]
    if shown:
        thumbs = [load_resized(data_root(trained.cfg) / r["path"], 128)[0] for r in shown]
        captions = [f"{plots.short(r['label'])} -> {plots.short(r['suggested'])}\n{r['p_suggested']:.2f}"
                    for r in shown]
        plots.image_gallery(thumbs, captions, out / "figures" / "label_errors",
                            "Likely label errors: folder label -> model's class", formats=trained.cfg.figure_formats)
    return rows


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_evaluation_report(out: Path, run_dir: Path | None, sections: list[dict], label_errors: list[dict] | None,
                            notes: list[str], evaluated: Path) -> Path:
    """report.md: the whole run on one page, in reading order, linking every table and figure. evaluated:
    what the title names (the run folder, or the model file)."""
    lines = [f"# Evaluation of `{evaluated}`", ""]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    if run_dir and (run_dir / "cv_summary.md").is_file():
        lines += ["## Cross-validation (from training)", "", (run_dir / "cv_summary.md").read_text(), ""]
        for fig in sorted((run_dir / "figures").glob("curves_*.png")):
            lines += [f"![{fig.stem}]({_rel(fig, out)})", ""]
    for s in sections:
        lines += _test_set_section(s, out / s["folder"])
    if label_errors is not None:
        lines += ["## Likely label errors (out-of-fold predictions)", "",
                  f"{len(label_errors)} training images that the model which never saw them assigns to another "
                  "class with probability >= 0.9: [label_errors.csv](label_errors.csv), for a person to review.", ""]
        if (out / "figures" / "label_errors.png").is_file():
            lines += ["![label errors](figures/label_errors.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _test_set_section(s: dict, folder: Path) -> list[str]:
    """report.md's section of one test set: the headline table, the intervals, the ensemble's class report,
    links and figures."""
    lo, hi = s["accuracy_ci95_groups"]
    flo, fhi = s["macro_f1_ci95_groups"]
    ilo, ihi = s["accuracy_ci95_images"]
    iflo, ifhi = s["macro_f1_ci95_images"]
    resampling = f"resampling {s['groups']} near-duplicate groups"
    dup, clean, name = s["with_near_duplicate_in_training"], s["without_near_duplicate_in_training"], s["folder"]
    skipped = (f"; {skipped_phrase(s['skipped_files'])}: [skipped.csv]({name}/skipped.csv)"
               if s.get("skipped_files") else "")
    lines = [f"## Test set: {s['test_set']} ({s['images']} images{skipped})", "", "| | value |", "|---|---|",
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
             f"{iflo:.4f}-{ifhi:.4f}: [confidence_intervals.csv]({name}/confidence_intervals.csv).", "",
             (folder / f"report_{s['model']}.md").read_text(), "",
             f"Per-fold reports: {', '.join(f'[{n}](' + name + f'/report_{n}.md)' for n in s['folds'])}; "
             f"every prediction: [predictions.csv]({name}/predictions.csv); "
             f"misclassified: [misclassified.csv]({name}/misclassified.csv).", ""]
    for fig in ("confusion_" + s["model"], "roc_pr", "reliability", "misclassified"):
        if (folder / "figures" / f"{fig}.png").is_file():
            lines += [f"![{fig}]({name}/figures/{fig}.png)", ""]
    return lines


def format_accuracy(part: dict) -> str:
    return "no images" if part["accuracy"] is None else f"{part['accuracy']:.4f} ({part['images']} images)"
