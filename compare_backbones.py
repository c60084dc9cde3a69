"""Train several variants (backbones, optimizers, remedies) on the same folds and compare them fairly.

    python compare_backbones.py                                   # configs/plans/backbones.yaml: the study's backbones
    python compare_backbones.py --config configs/plans/optimizers.yaml  # Adam vs SGD, same folds
    python compare_backbones.py --config C --set data_dir=D epochs=3   # overrides for every variant
    python compare_backbones.py --resume outputs/compare/<run>    # finish an interrupted comparison
    python compare_backbones.py --runs orig=outputs/a/RUN bal=outputs/b/RUN --reference orig   # table only

Writes outputs/compare/<time>/: one run folder per variant (as train.py writes), plan.yaml, comparison.md
(.csv, .json) and figures/ (accuracy vs epoch, bars with fold error bars, accuracy vs trainable parameters).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import compare, runs  # noqa: E402
from brainmri.errors import UserError, cli_entry, set_resume_command  # noqa: E402

log = logging.getLogger("brainmri")
DEFAULT_PLAN = "configs/plans/backbones.yaml"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"comparison plan (default {DEFAULT_PLAN})")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys of every variant")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these variants only (the reference is always run)")
    p.add_argument("--resume", metavar="DIR", help="continue the comparison in DIR with its saved plan")
    p.add_argument("--runs", nargs="+", metavar="NAME=RUN_DIR", help="tabulate finished train.py runs, train nothing")
    p.add_argument("--reference", help="with --runs: the run the others are compared with (default the first)")
    p.add_argument("--output-dir", default="outputs", help="where outputs/compare/<time> goes")
    args = p.parse_args(argv)
    if args.resume and (args.set or args.config is not None):
        raise UserError("--resume continues the saved plan.yaml as it is: --set and --config would be ignored (start "
                        "a new comparison to change them)")
    args.config = args.config or DEFAULT_PLAN
    return args


def parse_runs(pairs: list[str], reference: str | None) -> tuple[dict[str, Path], str]:
    """--runs NAME=RUN_DIR ... and --reference: the runs by name, and the reference's name."""
    named = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not (Path(path) / "config.yaml").is_file():
            raise UserError(f"--runs takes NAME=RUN_DIR with a train.py run folder, got {pair!r}")
        named[name] = Path(path)
    reference = reference or next(iter(named))
    if reference not in named:
        raise UserError(f"--reference {reference} is not one of {', '.join(named)}")
    return named, reference


def open_plan(args) -> tuple[dict, str, Path, list[str]]:
    """The variants to train (the plan, or the resumed comparison's saved one, with --set and --only), the
    reference, the comparison's folder (a new one holds plan.yaml) and the names of all its variants (a
    resumed comparison's table keeps those --only leaves out)."""
    plan = Path(args.resume) / "plan.yaml" if args.resume else Path(args.config)
    configs, reference = compare.load_plan(plan, [] if args.resume else args.set)
    every = list(configs)
    if args.only:
        configs = compare.only_variants(configs, args.only, reference)
    if args.resume:
        return configs, reference, Path(args.resume), every
    out = runs.new_folder(Path(args.output_dir) / "compare" / time.strftime("%Y%m%d-%H%M%S"))
    compare.save_plan(out / "plan.yaml", configs, reference)
    return configs, reference, out, list(configs)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.runs:
        named, reference = parse_runs(args.runs, args.reference)
        out = runs.new_folder(Path(args.output_dir) / "compare" / time.strftime("%Y%m%d-%H%M%S"))
    else:
        configs, reference, out, every = open_plan(args)
        set_resume_command(__file__, ["--resume", Path(out), *(["--only", *args.only] if args.only else [])])
        trained = compare.train_variants(configs, out)
        named = {name: trained.get(name, out / name) for name in every  # the plan's order; a variant not
                 if name in trained or (out / name / "cv_summary.json").is_file()}  # trained yet is left out
    runs.setup_logging()
    table = compare.compare_runs(named, reference, out)
    log.info("comparison (%d variants) in %s:\n%s", len(table), out, (out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
