"""Balance a class offline, as the study did, into a new dataset folder; or label every image's slice plane.

    python augment.py data --out data-balanced --class no_tumor --target 890          # the study's two transforms
    python augment.py data --out data-balanced --class no_tumor --target 890 --add new_slices/
    python augment.py data --out data-balanced --class no_tumor --target 890 --transforms my.yaml
    python augment.py data --estimate-planes planes.csv    # axial/sagittal/coronal for every image

Balancing (brainmri/balance.py): the input folder is only read. The output holds the originals (copied, or
hard-linked with --link), the added images, the augmented copies, manifest.csv (every file: original |
added | augmented, its source and exact transform), planes.csv (when the input has one),
augment_summary.json, contact_sheet.png and the marker .brainmri-augment. --force replaces only a folder
that augment.py wrote, and no output may hold, be or lie inside the input.
train.py reads manifest.csv and keeps every copy in its source's near-duplicate group, so no copy of a
test image is ever trained on. Same seed, same output, byte for byte.

--estimate-planes (brainmri/planes.py) writes only the planes.csv that the planes protocol and the
per-plane accuracy read; it lives here because balancing carries planes.csv over to the copies.
(On-the-fly augmentation of training batches is a config setting, augment_*, not this script.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from brainmri import balance, planes
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


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    data = Path(args.data)
    if args.estimate_planes:
        planes.estimate_folder(data, Path(args.estimate_planes), args.force)
        return 0
    missing = [flag for flag, v in (("--out", args.out), ("--class", args.cls), ("--target", args.target)) if v is None]
    if missing:
        raise UserError(f"balancing needs {', '.join(missing)} (or use --estimate-planes)")
    result = balance.balance(data, Path(args.out), args.cls, args.target, balance.load_transforms(args.transforms),
                             seed=args.seed, add=Path(args.add) if args.add else None, link=args.link,
                             force=args.force)
    log.info(balance.format_counts(result))
    log.info("%d added, %d augmented copies, %d unreadable images skipped; wrote %s (manifest.csv, contact_sheet.png)",
             result.added, result.augmented, len(result.skipped), result.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
