"""Evaluate a training run (or one .keras model) on its test set and write a report a student can use.

    python evaluate.py outputs/<experiment>/<run>                 # the run's own test set
    python evaluate.py outputs/<experiment>/<run> --test-dir DIR  # also an external folder of class folders
    python evaluate.py outputs/x/run/fold0/best.keras --test-dir DIR
    python evaluate.py RUN --tta --pdf                           # mirror test-time augmentation, PDF figures

Writes <run>/evaluation/ (evaluation-2/, ... if that exists): report.md first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri.errors import UserError, cli_entry  # noqa: E402

log = logging.getLogger("brainmri")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder, or a .keras model (then --test-dir is needed)")
    p.add_argument("--test-dir", help="an extra test folder: class folders (a subset of the model's classes)")
    p.add_argument("--tta", action="store_true", help="average predictions over the image and its mirror")
    p.add_argument("--pdf", action="store_true", help="write every figure as PDF too")
    return p.parse_args(argv)


def open_target(target: Path):
    """(run folder or None, config or None, classes, {fold: model path}, notes)."""
    from brainmri.config import load_config
    from brainmri.evaluation import find_fold_models
    from brainmri.runs import classes_of_model

    if target.is_file() and target.suffix == ".keras":
        return None, None, classes_of_model(target)[0], {0: target}, []
    if not (target / "config.yaml").is_file():
        raise UserError(f"{target} is neither a run folder (no config.yaml) nor a .keras model")
    models, notes = find_fold_models(target)
    if not models:
        raise UserError(f"{target} has no finished fold (fold*/done.json): train first, or wait for a fold")
    return target, load_config(target / "config.yaml"), json.loads((target / "classes.json").read_text()), models, notes


def run_test_sets(run_dir, cfg, classes, loaded, args):
    """(name, paths, labels, images, near-duplicate flags, planes, near-duplicate groups) for each test set."""
    import numpy as np

    from brainmri import evaluation
    from brainmri.data import BINARY_CLASSES, load_dataset, negative_class_of, to_binary
    from brainmri.duplicates import Detector
    from brainmri.pipeline import data_root
    from brainmri.splits import read_splits

    size = next(iter(loaded.values())).input_shape[1]
    binary = list(classes) == list(BINARY_CLASSES)
    sets, train_ds = [], None
    if run_dir is not None:
        train_ds = load_dataset(data_root(cfg), cfg.image_size, cfg.classes, cfg.cache_dir)
        if binary:
            train_ds = to_binary(train_ds, negative_class_of(train_ds.classes, cfg.negative_class))
        splits = read_splits(run_dir / "splits.csv")
        test = np.isin(train_ds.paths, [p for p, r in zip(splits["paths"], splits["roles"][:, 0]) if r == "test"])
        idx = np.flatnonzero(test)
        paths = [train_ds.paths[i] for i in idx]
        plane_of = dict(zip(splits["paths"], splits["planes"]))
        group_of = dict(zip(splits["paths"], splits["groups"]))
        sets.append(("test", paths, train_ds.labels[idx], train_ds.images[idx],
                     evaluation.duplicate_flags_from_splits(splits, paths, sorted(loaded)),
                     [plane_of[p] for p in paths], np.array([group_of[p] for p in paths])))
    if args.test_dir:
        ext = load_dataset(args.test_dir, size)
        if binary:  # any two folders, such as yes/ and no/
            ext = to_binary(ext, negative_class_of(ext.classes))
        evaluation.check_classes(classes, ext.classes, args.test_dir)
        labels = np.array([classes.index(ext.classes[y]) for y in ext.labels])
        if train_ds is not None:
            trained = np.isin(train_ds.paths, [p for p, r in zip(splits["paths"], splits["roles"]) if "train" in r])
            flags = evaluation.duplicate_flags_external(train_ds, trained, ext, Detector.of(cfg))
        else:
            flags = np.zeros(len(labels), bool)
        planes_csv = Path(args.test_dir) / "planes.csv"
        if planes_csv.is_file():
            from brainmri.planes import read_planes

            known = read_planes(planes_csv)
            planes = [known.get(p, "") for p in ext.paths]
        else:
            planes = [""] * len(ext.paths)
        sets.append(("external", ext.paths, labels, ext.images, flags, planes, external_groups(ext, cfg)))
    return sets


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    from brainmri import evaluation
    from brainmri import runs
    from brainmri.predictions import Predictions, predict

    target = Path(args.target)
    run_dir, cfg, classes, model_paths, notes = open_target(target)
    if run_dir is None and not args.test_dir:
        raise UserError("a single .keras model needs --test-dir")
    from brainmri.models import load_model, output_classes

    loaded = {k: load_model(p, compile=False) for k, p in sorted(model_paths.items())}
    for k, m in loaded.items():
        if output_classes(m) != len(classes):
            raise UserError(f"model of fold {k} tells {output_classes(m)} classes apart but the run has {len(classes)}")
    runs.setup_logging()
    test_sets = run_test_sets(run_dir, cfg, classes, loaded, args)  # input errors surface before any output
    out = runs.new_folder((run_dir or target.parent) / "evaluation")
    for note in notes:
        log.warning(note)
    notes = notes + ([f"evaluated on folds {sorted(loaded)} only"] if notes else [])
    formats = ("png", "pdf") if args.pdf else ("png",)
    batch = cfg.batch_size if cfg else 32
    sections = []
    for name, paths, labels, images, flags, planes, groups in test_sets:
        preds = [Predictions(f"fold{k}", paths, labels, predict(m, images, batch, args.tta))
                 for k, m in loaded.items()]
        summary = evaluation.evaluate_test_set(name, out / name, preds, flags, images, classes, formats, planes,
                                               groups)
        sections.append({**summary, "folder": name})
        log.info("%s: %s accuracy %.4f (95%% CI %.4f-%.4f over %d near-duplicate groups), mean of folds %.4f; with a "
                 "near-duplicate in training %s, without %s", name, summary["model"], summary["accuracy"],
                 *summary["accuracy_ci95_groups"], summary["groups"],
                 summary["mean_fold_accuracy"], evaluation.format_accuracy(summary["with_near_duplicate_in_training"]),
                 evaluation.format_accuracy(summary["without_near_duplicate_in_training"]))
        if summary["per_plane"]:
            log.info("%s per plane: %s", name, ", ".join(f"{pl} {evaluation.format_accuracy(v)}"
                                                         for pl, v in summary["per_plane"].items()))
    label_errors = write_label_errors(run_dir, cfg, classes, out, formats) if run_dir else None
    report = evaluation.write_evaluation_report(out, run_dir, sections, label_errors, notes)
    log.info("report: %s", report)
    return 0


def external_groups(ext, cfg):
    """Near-duplicate groups of an external folder, by the detector that grouped the training data."""
    from brainmri.config import Config
    from brainmri.duplicates import Detector, group_images

    return group_images(ext, Detector.of(cfg or Config()))[0]


def write_label_errors(run_dir: Path, cfg, classes, out: Path, formats) -> list[dict]:
    """Out-of-fold (validation) predictions that confidently disagree with the folder label."""
    import csv

    import numpy as np

    from brainmri import evaluation, plots
    from brainmri.data import load_resized
    from brainmri.plots import short
    from brainmri.predictions import read_predictions

    tables = [read_predictions(f)[""] for f in sorted(run_dir.glob("fold*/val_predictions.csv"))]
    paths = [p for t in tables for p in t["paths"]]
    labels = [y for t in tables for y in t["labels"]]
    probs = np.concatenate([t["probs"] for t in tables]) if tables else np.zeros((0, len(classes)))
    rows = evaluation.label_error_candidates(paths, labels, probs, classes)
    with open(out / "label_errors.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "suggested", "p_suggested", "p_label"])
        w.writeheader()
        w.writerows(rows)
    from brainmri.pipeline import data_root

    shown = rows[:24]
    if shown:
        thumbs = [load_resized(data_root(cfg) / r["path"], 128)[0] for r in shown]
        plots.image_gallery(thumbs, [f"{short(r['label'])} -> {short(r['suggested'])}\n{r['p_suggested']:.2f}" for r in shown],
                            out / "figures" / "label_errors", "Likely label errors: folder label -> model's class",
                            formats=formats)
    return rows


if __name__ == "__main__":
    sys.exit(main())
