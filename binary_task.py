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
binary/report.md in its run folder, and Grad-CAM maps of the misclassified test images (gradcam/, as
gradcam.py writes them, by the first fold's model at its own threshold).
An external set is checked for copies of the training images first: accuracy is reported on all its
images and on the clean ones.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import binary, pipeline, runs  # noqa: E402  (no TensorFlow yet: input errors come at once)
from brainmri.config import load_config  # noqa: E402
from brainmri.data import BINARY_CLASSES  # noqa: E402
from brainmri.errors import UserError, cli_entry  # noqa: E402
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
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--gradcam-limit", type=int, default=32, help="Grad-CAM maps of at most this many misclassified "
                                                                   "test images (0: none)")
    return p.parse_args(argv)


def task_config(args):
    """The task's run config: --config and --set, then the task's protocol, task and experiment."""
    if args.task in ("external", "external-only") and not args.external_test:
        raise UserError(f"task '{args.task}' needs --external-test DIR (a folder with yes/ and no/ class folders)")
    extra = list(TASKS[args.task]) + ["task=binary", f"experiment=binary-{args.task}"]
    if args.task == "external-only":
        extra.append(f"data_dir={args.external_test}")
    return load_config(args.config, extra + args.set)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = task_config(args)
    pipeline.check_inputs(cfg)
    if args.task == "external":
        binary.check_external(args.external_test)
        load_external(args.external_test, 32, BINARY_CLASSES)  # its errors before training (decoded again later)
    from brainmri import crossval

    run = runs.start_run(cfg)
    prepared = pipeline.prepare_data(cfg, run)
    crossval.run_folds(cfg, prepared.ds, prepared.roles, run)
    _, wrong = binary.evaluate_task(args.task, run, cfg, prepared.ds, args.external_test)
    if wrong and args.gradcam_limit:
        binary.explain_misclassified(run, wrong, args.gradcam_limit)
    runs.log.info("report: %s", run / "binary" / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
