"""Tumor (glioma + meningioma + pituitary) vs no tumor: one sigmoid unit, binary cross-entropy, class weights,
the decision threshold chosen on validation data (each fold model's on its own validation images; the
ensemble's is their mean), sensitivity/specificity/AUC on the test images (at that threshold and at 0.5).

    python binary_task.py split                          # (2) train and test on a split of the dataset
    python binary_task.py split --set split=random       #     ... with the study's plain random split
    python binary_task.py external --external-test DIR   # (1) train on the whole dataset, test on DIR (yes/ no/)
    python binary_task.py external-only --external-test DIR   # (3) train and test on a split of DIR alone
    python binary_task.py planes                         # (4) axial-only training, sagittal+coronal test
                                                         #     (needs planes.csv: see augment.py --estimate-planes)

Each task is a train.py run (configs/binary.yaml by default; --config and --set as in train.py) plus
binary/report.md in its run folder, and Grad-CAM maps of the misclassified test images (gradcam/, by
gradcam.py with fold 0's model).
An external set is checked for copies of the training images first: accuracy is reported on all its
images and on the clean ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri.errors import UserError, cli_entry  # noqa: E402

TASKS = {
    "split": ["protocol=holdout"],
    "external": ["protocol=all"],
    "external-only": ["protocol=holdout", "classes=[]"],
    "planes": ["protocol=planes"],
}
DEFAULT_CONFIG = "configs/binary.yaml"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=list(TASKS))
    p.add_argument("--external-test", metavar="DIR", help="external folder with a tumor and a no-tumor class folder")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--gradcam-limit", type=int, default=32, help="Grad-CAM maps of at most this many misclassified "
                                                                   "test images (0: none)")
    return p.parse_args(argv)


def task_config(args):
    from brainmri.config import load_config

    if args.task in ("external", "external-only") and not args.external_test:
        raise UserError(f"task '{args.task}' needs --external-test DIR (a folder with yes/ and no/ class folders)")
    extra = list(TASKS[args.task]) + ["task=binary", f"experiment=binary-{args.task}"]
    if args.task == "external-only":
        extra.append(f"data_dir={args.external_test}")
    return load_config(args.config, extra + args.set)


def fold_models(run):
    from brainmri.evaluation import find_fold_models
    from brainmri.models import load_model

    models, _ = find_fold_models(run)
    return {k: load_model(p, compile=False) for k, p in sorted(models.items())}


def own_test_set(run, prepared):
    """The run's test images (roles 'test'), each fold model's P(tumor), near-duplicate flags."""
    import numpy as np

    from brainmri.evaluation import duplicate_flags_from_splits
    from brainmri.predictions import predict
    from brainmri.splits import read_splits

    idx = np.flatnonzero(prepared.roles[:, 0] == "test")
    loaded = fold_models(run)
    p = {k: predict(m, prepared.ds.images[idx], 32)[:, 1] for k, m in loaded.items()}
    paths = [prepared.ds.paths[i] for i in idx]
    copies = duplicate_flags_from_splits(read_splits(run / "splits.csv"), paths, sorted(loaded))
    root = prepared.ds.root
    return paths, [root / q for q in paths], prepared.ds.labels[idx], p, copies


def external_test_set(run, prepared, folder, cfg):
    """The external images, each fold model's P(tumor), and which are copies of images used in training."""
    import numpy as np

    from brainmri.binary import load_external
    from brainmri.duplicates import Detector
    from brainmri.evaluation import duplicate_flags_external
    from brainmri.predictions import predict

    ext = load_external(folder, cfg.image_size, cfg.cache_dir)
    trained = np.isin(prepared.roles, ["train"]).any(1)
    copies = duplicate_flags_external(prepared.ds, trained, ext, Detector.of(cfg))
    loaded = fold_models(run)
    p = {k: predict(m, ext.images, 32)[:, 1] for k, m in loaded.items()}
    return ext.paths, [Path(folder) / q for q in ext.paths], ext.labels, p, copies


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = task_config(args)
    from brainmri import pipeline, runs

    pipeline.check_inputs(cfg)
    if args.task == "external":
        from brainmri.binary import load_external

        load_external(args.external_test, 32)  # its errors before any training (decoded again at full size)
    import numpy as np

    from brainmri import crossval
    from brainmri.binary import fold_thresholds, write_binary_report

    run = runs.start_run(cfg)
    prepared = pipeline.prepare_data(cfg, run)
    crossval.run_folds(cfg, prepared.ds, prepared.roles, run)
    if args.task == "external":
        paths, files, labels, fold_p, copies = external_test_set(run, prepared, args.external_test, cfg)
        name = f"external folder {args.external_test}"
    else:
        paths, files, labels, fold_p, copies = own_test_set(run, prepared)
        name = {"split": f"{cfg.test_fraction:.0%} hold-out ({cfg.split} split)",
                "external-only": f"{cfg.test_fraction:.0%} hold-out of {cfg.data_dir} ({cfg.split} split)",
                "planes": f"{'+'.join(cfg.test_planes)} slices (trained on {'+'.join(cfg.train_planes)})"}[args.task]
    notes = [f"{cfg.backbone}, {cfg.image_size} px, weights {cfg.weights}, {cfg.epochs} epochs, {cfg.folds}-fold "
             f"ensemble, class weights {cfg.class_weight}; each fold model's threshold chosen on its own validation "
             "predictions, the ensemble's is their mean"]
    summary = write_binary_report(run / "binary", args.task, name, paths, labels, fold_p, copies, fold_thresholds(run), notes,
                           other_source=args.task == "external")
    m = summary["at_validation_threshold"]
    threshold, p = m["threshold"], np.mean(list(fold_p.values()), axis=0)
    runs.log.info("binary task %s on %s: AUC %s, accuracy %.4f, sensitivity %s, specificity %s at threshold %.3f; "
                  "%d test images have a near-duplicate in training", args.task, name,
                  "n/a" if m["auc"] is None else f"{m['auc']:.4f}", m["accuracy"], m["sensitivity"],
                  m["specificity"], threshold, summary["near_duplicates_in_training"])
    wrong = [str(files[i]) for i in range(len(labels)) if int(p[i] >= threshold) != labels[i]]
    if wrong and args.gradcam_limit:
        import gradcam

        fold = min(fold_p)  # gradcam.py explains one fold model: caption it at that model's own threshold
        gradcam.main([str(run), *wrong[: args.gradcam_limit], "--limit", str(args.gradcam_limit), "--class", "tumor",
                      "--fold", str(fold), "--threshold", str(fold_thresholds(run)[fold])])
    runs.log.info("report: %s", run / "binary" / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
