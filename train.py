"""Train the study's classifier with near-duplicate-aware cross-validation.

    python train.py                                   # the study: configs/default.yaml on data/
    python train.py --config configs/demo.yaml        # synthetic data, a few CPU minutes
    python train.py --config configs/cpu-reference.yaml --set split=random
    python train.py --config C --run-dir outputs/x/run --fold 2    # one fold per job
    python train.py --aggregate outputs/x/run         # CV summary of the folds done so far
    python train.py --resume outputs/x/run            # finish an interrupted run
    python train.py --audit-only                      # the dataset audit alone
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import pipeline, runs  # noqa: E402  (no TensorFlow yet: input errors come at once)
from brainmri.config import load_config  # noqa: E402
from brainmri.errors import UserError, cli_entry, set_resume_command  # noqa: E402

DEFAULT_CONFIG = "configs/default.yaml"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"YAML config (default {DEFAULT_CONFIG} when present)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--run-dir", help="write into this run folder (shared by fold jobs)")
    p.add_argument("--fold", type=int, help="train this fold only, then aggregate what is done")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its saved config")
    p.add_argument("--aggregate", metavar="RUN_DIR", help="only rebuild the CV summary of RUN_DIR")
    p.add_argument("--audit-only", action="store_true", help="load, hash and audit the data, no training")
    return p.parse_args(argv)


def resolve(args):
    """The config and run folder this invocation works on."""
    run_dir = args.resume or args.aggregate or args.run_dir
    if args.resume or args.aggregate:
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise UserError(f"{run_dir} is not a run folder (no config.yaml)")
        if args.config or args.set:
            raise UserError("--resume/--aggregate use the run's saved config; drop --config/--set")
        return load_config(saved), run_dir
    config = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
    return load_config(config, args.set), run_dir


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, run_dir = resolve(args)
    if args.fold is not None and not 0 <= args.fold < cfg.folds:
        raise UserError(f"--fold {args.fold} is out of range: the config has {cfg.folds} folds (0..{cfg.folds - 1})")
    if args.aggregate:
        from brainmri import crossval

        runs.setup_logging()
        return 0 if crossval.aggregate(Path(run_dir), cfg) else 1
    if args.audit_only:
        cfg = dataclasses.replace(cfg, experiment="audit")
    pipeline.check_inputs(cfg)
    from brainmri import crossval

    run = runs.start_run(cfg, run_dir)
    if not args.audit_only:
        set_resume_command(__file__, ["--resume", Path(run), *([] if args.fold is None else ["--fold", args.fold])])
    prepared = pipeline.prepare_data(cfg, run)
    if args.audit_only:
        return 0
    crossval.run_folds(cfg, prepared.ds, prepared.roles, run, None if args.fold is None else [args.fold])
    return 0


if __name__ == "__main__":
    sys.exit(main())
