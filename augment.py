"""Balance a class offline, as the study did, into a new dataset folder; or label slice planes.

    python augment.py data --out data-balanced --class no_tumor --target 890          # the study's two transforms
    python augment.py data --out data-balanced --class no_tumor --target 890 --add new_slices/
    python augment.py data --out data-balanced --class no_tumor --target 890 --transforms my.yaml
    python augment.py data --estimate-planes planes.csv    # axial/sagittal/coronal for every image

The input folder is only read. The output holds the originals (copied, or hard-linked with --link), the
added images, the augmented copies, manifest.csv (every file: original | added | augmented, its source and
exact transform), planes.csv (when the input has one), augment_summary.json, contact_sheet.png and the
marker .brainmri-augment. --force replaces only a folder that augment.py wrote, and no output may hold, be
or lie inside the input.
train.py reads manifest.csv and keeps every copy in its source's near-duplicate group, so no copy of a
test image is ever trained on. Same seed, same output, byte for byte.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from brainmri.errors import UserError, cli_entry

log = logging.getLogger("brainmri")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="dataset folder (Kaggle Training/Testing layout, or class folders)")
    p.add_argument("--out", help="the new dataset folder to write")
    p.add_argument("--class", dest="cls", help="the class to bring up, e.g. no_tumor")
    p.add_argument("--target", type=int, help="images the class should have in the end (all subsets)")
    p.add_argument("--transforms", help="YAML file with a list of transforms (default: the study's two)")
    p.add_argument("--add", help="a folder of extra images for the class (e.g. new sagittal/coronal slices)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--link", action="store_true", help="hard-link the originals instead of copying them")
    p.add_argument("--force", action="store_true", help="replace an earlier output of augment.py")
    p.add_argument("--estimate-planes", metavar="CSV", help="only write the estimated plane of every image")
    return p.parse_args(argv)


def read_transforms(path: str | None) -> list[dict]:
    from brainmri.augment import STUDY_TRANSFORMS, check_transforms
    from brainmri.config import read_yaml

    if not path:
        return [dict(t) for t in STUDY_TRANSFORMS]
    data = read_yaml(path) if path.endswith((".yaml", ".yml")) else None
    if data is None:
        raise UserError(f"--transforms takes a .yaml file, got {path}")
    return check_transforms(data.get("transforms"), path)


def estimate_planes(data: Path, out: Path, force: bool) -> int:
    """planes.csv for a dataset folder (never written into it): estimated plane and its probability."""
    import numpy as np
    from tqdm import tqdm

    from brainmri import planes
    from brainmri.data import decode, find_images

    if out.exists() and not force:
        raise UserError(f"{out} exists: choose another file, or pass --force")
    if data.resolve() in out.resolve().parents:
        raise UserError(f"write {out} outside the input folder {data}")
    items, _ = find_images(data)
    rows, probs = [], []
    for rel, _, _ in tqdm(items, desc="estimate planes", unit="img", disable=None):
        try:
            feats = planes.plane_features(decode(data / rel))[None]
        except ValueError as err:
            log.warning("skipped %s: %s", data / rel, err)
            continue
        name, p = planes.predict_planes(feats)
        rows.append((rel, name[0]))
        probs.append(f"{p.max():.3f}")
    planes.write_planes(out, rows, {"probability": probs})
    counts = {pl: sum(1 for _, x in rows if x == pl) for pl in planes.PLANES}
    log.info("wrote %s: %d images, %s (estimated; %d skipped)", out, len(rows), counts, len(items) - len(rows))
    model = planes.load_estimator()["check"]
    log.info("the estimator's accuracy on %d hand-checked slices: %.3f", model["images"], model["accuracy"])
    return 0


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    data = Path(args.data)
    if args.estimate_planes:
        return estimate_planes(data, Path(args.estimate_planes), args.force)
    missing = [flag for flag, v in (("--out", args.out), ("--class", args.cls), ("--target", args.target)) if v is None]
    if missing:
        raise UserError(f"balancing needs {', '.join(missing)} (or use --estimate-planes)")
    from brainmri.augment import balance

    result = balance(data, Path(args.out), args.cls, args.target, read_transforms(args.transforms), seed=args.seed,
                     add=Path(args.add) if args.add else None, link=args.link, force=args.force)
    width = max(len(c) for c in result.before)
    lines = [f"{'class':{width}}  before  after"]
    lines += [f"{c:{width}}  {result.before[c]:6d}  {result.after[c]:5d}" for c in result.before]
    lines.append(f"{'total':{width}}  {sum(result.before.values()):6d}  {sum(result.after.values()):5d}")
    log.info("\n".join(lines))
    log.info("%d added, %d augmented copies, %d unreadable images skipped; wrote %s (manifest.csv, contact_sheet.png)",
             result.added, result.augmented, len(result.skipped), result.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
