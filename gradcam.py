"""Grad-CAM / Grad-CAM++ maps of a trained model, batched, with localization and faithfulness scores.

    python gradcam.py outputs/<exp>/<run>                      # the run's test images (fold 0's model)
    python gradcam.py RUN path/to/slices/ img.jpg --class glioma_tumor
    python gradcam.py RUN --misclassified                      # the list from the latest evaluate.py
    python gradcam.py RUN --score                              # synthetic data: pointing game vs baselines, energy
    python gradcam.py RUN --deletion                           # faithfulness: deletion curve vs a random map
    python gradcam.py fold0/best.keras images/ --method gradcam++ --layer top_activation

Writes <run>/gradcam/ (gradcam-2/, ... if that exists): one panel per image, grid.png, scores.json. Maps are
batched by the run's batch_size and figures written in its figure_formats (the defaults outside a run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri import runs  # noqa: E402
from brainmri.errors import UserError, cli_entry  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder or a .keras model")
    p.add_argument("images", nargs="*", help="image files or folders (default: the run's test images)")
    p.add_argument("--fold", type=int, default=0, help="which fold's model of a run (default 0)")
    p.add_argument("--misclassified", action="store_true", help="the images evaluate.py listed as misclassified")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++"])
    p.add_argument("--layer", help="feature-map layer (default: the last one; 'nested/name' inside a backbone)")
    p.add_argument("--class", dest="class_name", help="explain this class (default: the predicted one)")
    p.add_argument("--score", action="store_true", help="score maps against the synthetic lesion masks")
    p.add_argument("--deletion", action="store_true", help="deletion-curve faithfulness against a random map")
    p.add_argument("--limit", type=int, default=64, help="at most this many images (default 64; 0 = all)")
    p.add_argument("--threshold", type=float, help="tumor-vs-no-tumor models: call 'tumor' at P(tumor) >= this and "
                                                    "map that call (binary_task.py passes the one chosen on validation)")
    runs.add_figure_formats_option(p)
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.limit < 0:
        raise UserError(f"--limit {args.limit}: give a number of images, or 0 for all")
    runs.setup_logging()
    trained = runs.open_fold_model(Path(args.target), args.fold, args.figure_formats)
    from brainmri import explain  # (TensorFlow loads here)
    from brainmri.models import load_model

    model = load_model(trained.models[args.fold], compile=False)
    request = explain.Request(args.method, args.layer, args.class_name, args.threshold, args.misclassified,
                              args.score, args.deletion, args.limit)
    explain.gradcam(trained, model, request, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
