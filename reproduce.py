"""Run the whole course study in order, one folder per experiment, and write one report beside it.

    python reproduce.py --quick                              # ~8 min on 2 CPU cores: synthetic data, small model
    python reproduce.py --quick --data DATA                  # the same on a share of the real images
    python reproduce.py --download                           # fetch the data with kagglehub, then the study (GPU)
    python reproduce.py --data DATA --external YES_NO_DIR    # the study with folders at hand
    python reproduce.py --report-only                        # rebuild the report from the steps done so far

The plan (configs/study.yaml; --quick: configs/study-quick.yaml) lists the steps: 5-fold CV with Adam under
the study's random split and under group-aware splits, evaluation, SGD, Grad-CAM of correct and misclassified
images, the no_tumor balancing, axial-only training, B0 vs B2 vs frozen VGG16, and the three tumor-vs-no-tumor
tasks. Each step runs the project's own script into <out>/NN-<step>/ and is kept once done (done.json): rerun
the same command to continue after an interruption or a failure. The external task is skipped without
--external (or --download). Writes <out>/report.md and <out>/report.html (self-contained; print it to PDF).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri.errors import UserError, cli_entry  # noqa: E402

REPO = Path(__file__).resolve().parent
PLANS = {False: "configs/study.yaml", True: "configs/study-quick.yaml"}
OUTS = {False: "outputs/reproduce", True: "outputs/reproduce-quick"}
DEFAULT_DATA = REPO / "data"  # train.py's default data_dir, used when it holds the Kaggle folders


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the Kaggle data folder (Training/ and Testing/); --quick without it: synthetic")
    p.add_argument("--external", help="the external yes/no folder for the tumor-vs-no-tumor test")
    p.add_argument("--download", action="store_true", help="fetch the study's data and the yes/no set with kagglehub")
    p.add_argument("--quick", action="store_true", help=f"CPU-sized plan ({PLANS[True]})")
    p.add_argument("--synthetic", action="store_true", help="the synthetic demo set instead of real data "
                                                            "(what --quick uses without --data)")
    p.add_argument("--plan", help=f"another plan file (default {PLANS[False]})")
    p.add_argument("--out", help=f"the study folder (default {OUTS[False]}, with --quick {OUTS[True]})")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from the finished steps")
    return p.parse_args(argv)


def resolve_data(args) -> tuple[Path | None, Path | None]:
    """The data and external folders: given, downloaded, ./data, or (--quick) none for the synthetic set."""
    data = Path(args.data).resolve() if args.data else None
    external = Path(args.external).resolve() if args.external else None
    if args.download:
        from brainmri.download import download_external, download_study

        data = data or download_study()
        external = external or download_external()
    if data is None and not args.quick and (DEFAULT_DATA / "Training").is_dir():
        data = DEFAULT_DATA
    if args.synthetic:
        if data is not None:
            raise UserError("--synthetic and --data/--download exclude each other")
        return None, external
    if data is None and not (args.quick or args.report_only):
        raise UserError("no data: pass --data DIR (Training/ and Testing/), or --download (kagglehub), "
                        "or --quick for the synthetic demo")
    return data, external


def check_folders(data: Path | None, external: Path | None) -> Path | None:
    """Bad folders fail now, not after hours of earlier steps; returns the external class-folder root."""
    from brainmri.binary import check_external
    from brainmri.data import find_images
    from brainmri.download import yes_no_root

    if data is not None:
        find_images(data)
    if external is None:
        return None
    if not external.is_dir():
        raise UserError(f"external folder not found: {external}")
    folders = [p for p in external.iterdir() if p.is_dir() and not p.name.startswith(".")]
    root = external if len(folders) == 2 else yes_no_root(external)
    check_external(root)  # its two folders must say which is no tumor: now, not at the last step
    return root


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick and args.plan:
        raise UserError("--quick picks configs/study-quick.yaml: drop --plan, or --quick")
    from brainmri import report, study

    plan = study.load_plan(Path(args.plan).resolve() if args.plan else REPO / PLANS[args.quick], REPO)
    data, external = resolve_data(args)
    out = Path(args.out or OUTS[args.quick]).resolve()
    study.check_outside(out, {"data folder": data, "external folder": external})
    external = check_folders(data, external)
    s = study.Study(plan, out, data, external, REPO)
    if args.report_only:
        if not (out / "study.json").is_file():
            raise UserError(f"{out} is not a study folder (no study.json): run the plan first")
        s = study.Study(plan, out, study.saved_data(out), external, REPO)
        study.check_study(s)  # the report is of this plan's steps: another plan's would read as unfinished
    else:
        print(f"study folder: {out} ({plan.path.name}, {len(plan.steps)} steps; data: {data or 'synthetic'})")
        try:
            study.run_plan(s)
        except KeyboardInterrupt:
            print("\ninterrupted: rerun the same command to continue (finished steps are kept)", file=sys.stderr)
            return 130
    md, page = report.write_report(s)
    print(f"report: {md}\n        {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
