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

from brainmri.errors import UserError, cli_entry  # noqa: E402

log = logging.getLogger("brainmri")
DEFAULT_PLAN = "configs/plans/backbones.yaml"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_PLAN, help=f"comparison plan (default {DEFAULT_PLAN})")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys of every variant")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these variants only (the reference is always run)")
    p.add_argument("--resume", metavar="DIR", help="continue the comparison in DIR with its saved plan")
    p.add_argument("--runs", nargs="+", metavar="NAME=RUN_DIR", help="tabulate finished train.py runs, train nothing")
    p.add_argument("--reference", help="with --runs: the run the others are compared with (default the first)")
    p.add_argument("--output-dir", default="outputs", help="where outputs/compare/<time> goes")
    return p.parse_args(argv)


def parse_runs(pairs: list[str]) -> dict[str, Path]:
    runs = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not (Path(path) / "config.yaml").is_file():
            raise UserError(f"--runs takes NAME=RUN_DIR with a train.py run folder, got {pair!r}")
        runs[name] = Path(path)
    return runs


def train_variants(configs: dict, out: Path) -> dict[str, Path]:
    """Each variant into out/<name>, one after the other; a finished variant is skipped (resume)."""
    from brainmri import crossval, pipeline, runs

    for cfg in configs.values():
        pipeline.check_inputs(cfg)  # every variant's input errors before hours of training
    done = {}
    for i, (name, cfg) in enumerate(configs.items(), 1):
        run = runs.start_run(cfg, out / name)
        log.info("=== variant %d/%d: %s (%s, %d px) ===", i, len(configs), name, cfg.backbone, cfg.image_size)
        start = time.perf_counter()
        prepared = pipeline.prepare_data(cfg, run)
        crossval.run_folds(cfg, prepared.ds, prepared.roles, run)
        log.info("variant %s: %.0f s", name, time.perf_counter() - start)
        done[name] = run
    return done


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    from brainmri import compare, runs

    if args.runs:
        named = parse_runs(args.runs)
        reference = args.reference or next(iter(named))
        if reference not in named:
            raise UserError(f"--reference {reference} is not one of {', '.join(named)}")
        out = runs.new_folder(Path(args.output_dir) / "compare" / time.strftime("%Y%m%d-%H%M%S"))
        runs.setup_logging()
    else:
        plan = Path(args.resume) / "plan.yaml" if args.resume else Path(args.config)
        configs, reference = compare.load_plan(plan, [] if args.resume else args.set)
        if args.only:
            unknown = sorted(set(args.only) - set(configs))
            if unknown:
                raise UserError(f"--only: unknown variant(s) {unknown} (known: {', '.join(configs)})")
            configs = {k: v for k, v in configs.items() if k in args.only or k == reference}
        out = Path(args.resume) if args.resume else runs.new_folder(
            Path(args.output_dir) / "compare" / time.strftime("%Y%m%d-%H%M%S"))
        if not args.resume:
            import yaml

            saved = {"variants": {k: v.to_dict() for k, v in configs.items()}, "reference": reference}
            (out / "plan.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
        named = train_variants(configs, out)
    runs.setup_logging()
    table = compare.compare_runs(named, reference, out)
    log.info("comparison (%d variants) in %s:\n%s", len(table), out, (out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
