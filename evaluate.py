"""Evaluate a training run (or one .keras model) on its test set and write a report a student can use.

    python evaluate.py outputs/<experiment>/<run>                 # the run's own test set
    python evaluate.py outputs/<experiment>/<run> --test-dir DIR  # also an external folder of class folders
    python evaluate.py outputs/x/run/fold0/best.keras --test-dir DIR
    python evaluate.py RUN --tta --figure-formats png pdf        # mirror test-time augmentation, PDF figures too

Writes <run>/evaluation/ (evaluation-2/, ... if that exists): report.md first. Predictions are batched by the
run's batch_size and figures written in its figure_formats (the defaults for a model outside a run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import evaluation, runs  # noqa: E402  (no TensorFlow yet: it loads with the models)
from brainmri.errors import UserError, cli_entry  # noqa: E402
from brainmri.paths import is_within  # noqa: E402

log = logging.getLogger("brainmri")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder, or a .keras model (then --test-dir is needed)")
    p.add_argument("--test-dir", help="an extra test folder: class folders (a subset of the model's classes)")
    p.add_argument("--tta", action="store_true", help="average predictions over the image and its mirror")
    runs.add_figure_formats_option(p)
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    trained = runs.open_run_or_model(Path(args.target), args.figure_formats)
    if trained.run is None and not args.test_dir:
        raise UserError("a single .keras model needs --test-dir")
    if args.test_dir and is_within(trained.folder, args.test_dir):
        raise UserError(f"the evaluation would be written inside the test folder {args.test_dir} (into "
                        f"{trained.folder}): its figures would be read as test images; move the run out of it")
    loaded = evaluation.load_models(trained)
    runs.setup_logging()
    size = next(iter(loaded.values())).input_shape[1]
    test_sets = evaluation.test_sets(trained, size, args.test_dir)  # input errors surface before any output
    out, report = runs.write_whole(trained.folder / "evaluation",
                                   lambda folder: evaluation.evaluate(trained, loaded, test_sets, folder, args.tta))
    log.info("report: %s", out / report.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
