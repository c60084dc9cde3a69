"""Tumor (glioma + meningioma + pituitary) vs no tumor: one sigmoid unit, binary cross-entropy, class weights,
the decision threshold chosen on validation data (each fold model's on its own validation images; the
ensemble's is their mean), sensitivity/specificity/AUC on the test images (at that threshold and at 0.5).

    python binary_task.py split                          # (2) train and test on a split of the dataset
    python binary_task.py split --set split=random       #     ... with the study's plain random split
    python binary_task.py external --external-test DIR   # (1) train on the whole dataset, test on DIR (yes/ no/)
    python binary_task.py external-only --external-test DIR   # (3) train and test on a split of DIR alone
    python binary_task.py planes                         # (4) axial-only training, sagittal+coronal test
                                                         #     (needs planes.csv: see augment.py --estimate-planes)

    python binary_task.py split --resume outputs/binary-split/RUN   # finish an interrupted run

Each task is a train.py run (configs/binary.yaml by default; --config, --set, --run-dir and --resume as in
train.py) plus
binary/report.md in its run folder, and Grad-CAM maps of the misclassified test images (gradcam/, as
gradcam.py writes them, by the first fold's model at its own threshold).
An external set is checked for copies of the training images first: accuracy is reported on all its
images and on the clean ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import binary, pipeline, runs  # noqa: E402  (no TensorFlow yet: input errors come at once)
from brainmri.config import load_config  # noqa: E402
from brainmri.data import BINARY_CLASSES  # noqa: E402
from brainmri.errors import UserError, cli_entry, set_resume_command  # noqa: E402
from brainmri.paths import is_within, same_folder  # noqa: E402
from brainmri.testsets import load_external  # noqa: E402

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
    p.add_argument("--config", help=f"YAML config (default {DEFAULT_CONFIG})")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--run-dir", help="write into this run folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run of this task with its saved "
                                                       "config (finished folds are kept)")
    p.add_argument("--gradcam-limit", type=int, help=f"Grad-CAM maps of at most this many misclassified test images "
                                                     f"(0: none; default {binary.GRADCAM_LIMIT}, or the resumed run's)")
    return p.parse_args(argv)


def task_config(args):
    """The task's run config, run folder (None: a new one) and external test folder (task external; None
    otherwise): --config and --set, then the task's protocol, task and experiment; with --resume, the run's
    saved config and folders, which must be those of this task."""
    if args.resume:
        cfg, external = resumed_config(args)
        return cfg, args.resume, external
    if args.task in ("external", "external-only") and not args.external_test:
        raise UserError(f"task '{args.task}' needs --external-test DIR (a folder with yes/ and no/ class folders)")
    extra = list(TASKS[args.task]) + ["task=binary", f"experiment=binary-{args.task}"]
    if args.task == "external-only":
        extra.append(f"data_dir={args.external_test}")
    cfg = load_config(args.config or DEFAULT_CONFIG, extra + args.set)
    return cfg, args.run_dir, args.external_test if args.task == "external" else None


def resumed_config(args):
    """The saved config of the run folder --resume names, checked to be a binary run of args.task, and its
    external test folder (--external-test, else the one the run recorded; the run's own, checked later)."""
    if args.config or args.set or args.run_dir:
        raise UserError("--resume uses the run's saved config and folder; drop --config/--set "
                        "(and give the folder once: --resume or --run-dir, not both)")
    saved = Path(args.resume) / "config.yaml"
    if not saved.is_file():
        raise UserError(f"{args.resume} is not a run folder (no config.yaml)")
    cfg = load_config(saved)
    recorded = binary.read_task(Path(args.resume))  # {} for a run begun before it was recorded
    task = recorded.get("task") or cfg.experiment.removeprefix("binary-")
    if cfg.task != "binary" or task not in TASKS:
        raise UserError(f"{args.resume} is not a binary_task.py run (task {cfg.task}, experiment {cfg.experiment})")
    if task != args.task:
        raise UserError(f"{args.resume} is a run of task '{task}', not '{args.task}': "
                        f"python binary_task.py {task} --resume {args.resume}")
    if task == "external-only" and args.external_test and not same_folder(args.external_test, cfg.data_dir):
        raise UserError(f"{args.resume} was trained and tested on {cfg.data_dir}, not {args.external_test}: drop "
                        "--external-test, or train a new run")
    external = args.external_test or recorded.get("external_test") if task == "external" else None
    if task == "external" and not external:
        raise UserError(f"task 'external' needs --external-test DIR: {args.resume} does not record its folder")
    return cfg, external


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, run_dir, external = task_config(args)
    if external and is_within(run_dir or cfg.output_dir, external):
        raise UserError(f"the run folder {run_dir or cfg.output_dir} lies inside the external test folder {external}: "
                        "its figures would be scored as test images; choose a folder outside it")
    pipeline.check_inputs(cfg)
    if external:
        binary.check_external(external)
        load_external(external, 32, BINARY_CLASSES)  # its errors before training (decoded again later)
    from brainmri import crossval

    limit = binary.gradcam_limit(args.gradcam_limit, Path(run_dir) if run_dir else None)
    record = {**binary.task_record(args.task, external), "gradcam_limit": limit}
    if run_dir:
        binary.check_task(Path(run_dir), record)
    run = runs.start_run(cfg, run_dir)
    binary.record_task(run, record)
    set_resume_command(__file__, [args.task, "--resume", Path(run)])
    prepared = pipeline.prepare_data(cfg, run)
    crossval.run_folds(cfg, prepared.ds, prepared.roles, run)
    _, wrong = binary.evaluate_task(args.task, run, cfg, prepared.ds, external)
    if wrong and limit and not binary.read_task(run).get("gradcam"):  # once (a resumed finished run)
        maps = binary.explain_misclassified(run, wrong, limit)
        binary.record_task(run, {**record, "gradcam": maps.name})
    runs.log.info("report: %s", run / "binary" / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
