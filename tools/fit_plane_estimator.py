"""Fit the slice-plane estimator on hand-labelled real slices and measure it on a separate labelled sample.

    python tools/fit_plane_estimator.py ../shared/datasets/brain-tumor-classification-mri

Reads data/planes_handchecked.csv (path, plane, sample = fit | check), fits on "fit", prints accuracy,
per-plane recall and the confusion matrix on "check", and writes brainmri/plane_model.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri import planes  # noqa: E402
from brainmri.data import decode  # noqa: E402
from brainmri.errors import UserError, cli_entry  # noqa: E402


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the dataset folder the labelled paths are relative to")
    p.add_argument("--labels", default="data/planes_handchecked.csv")
    p.add_argument("--out", default=str(planes.MODEL_FILE))
    args = p.parse_args(argv)
    with open(args.labels, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [r["path"] for r in rows if not (Path(args.data) / r["path"]).is_file()]
    if missing:
        raise UserError(f"{len(missing)} labelled images not found under {args.data}, e.g. {missing[0]}")
    feats = np.stack([planes.plane_features(decode(Path(args.data) / r["path"])) for r in rows])
    truth = np.array([r["plane"] for r in rows])
    fit = np.array([r["sample"] == "fit" for r in rows])
    model = planes.fit_estimator(feats[fit], list(truth[fit]))
    pred, _ = planes.predict_planes(feats[~fit], model)
    pred, check = np.array(pred), truth[~fit]
    from sklearn.metrics import confusion_matrix

    acc = float((pred == check).mean())
    recall = {pl: float((pred[check == pl] == pl).mean()) for pl in planes.PLANES}
    model["fitted_on"] = {"images": int(fit.sum()), "labels": args.labels}
    model["check"] = {"images": int((~fit).sum()), "accuracy": acc, "recall": recall,
                      "counts": {pl: int((check == pl).sum()) for pl in planes.PLANES}}
    Path(args.out).write_text(json.dumps(model, indent=1))
    print(f"fitted on {fit.sum()} images; check sample {len(check)} images: accuracy {acc:.4f}")
    print("recall per plane: " + ", ".join(f"{k} {v:.3f} ({model['check']['counts'][k]})" for k, v in recall.items()))
    print("confusion (rows true, columns predicted; order " + ", ".join(planes.PLANES) + "):")
    print(confusion_matrix(check, pred, labels=list(planes.PLANES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
