"""Slice planes (axial, sagittal, coronal): planes.csv files, and an estimator for data that has none.

The estimator is a multinomial logistic regression on two kinds of features of the head, cropped to its
bounding box: shape and symmetry numbers (sagittal slices are not left-right symmetric, coronal ones are
taller and open at the neck), and the 16x16 normalised thumbnail. It was fitted on hand-labelled real
slices (tools/fit_plane_estimator.py, data/planes_handchecked.csv, sample "fit") and checked on a separate
hand-labelled sample ("check"); its coefficients ship in plane_model.json, so no data is needed to use it.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from .config import PLANES
from .data import decode, find_images
from .errors import UserError
from .paths import is_within

log = logging.getLogger("brainmri")

MODEL_FILE = Path(__file__).with_name("plane_model.json")
_CROP = 64  # the head crop is compared at this size
_THUMB = 16  # and kept as a thumbnail feature at this size


def head_mask(gray: np.ndarray) -> np.ndarray:
    """The largest bright connected region (Otsu threshold, small gaps closed): the head."""
    _, mask = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n < 2:
        return np.ones_like(mask)
    return (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)


def plane_features(image: np.ndarray) -> np.ndarray:
    """Symmetry, shape and thumbnail features of one slice (grey or RGB uint8, any size)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
    if gray.min() == gray.max():
        raise ValueError("a blank image (one grey level): no plane to estimate")
    mask = head_mask(gray)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = cv2.resize(gray[y0:y1, x0:x1].astype(np.float32), (_CROP, _CROP))
    crop = (crop - crop.mean()) / (crop.std() + 1e-6)
    head = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (_CROP, _CROP))
    width_per_row = head.mean(1)
    shape = [
        _corr(crop, crop[:, ::-1]),  # left-right symmetry: low for sagittal slices
        _corr(crop, crop[::-1]),  # top-bottom symmetry: higher for axial slices
        1 - np.abs(head - head[:, ::-1]).mean(),  # left-right symmetry of the outline alone
        (y1 - y0) / (x1 - x0),  # aspect ratio of the head
        mask.sum() / ((y1 - y0) * (x1 - x0)),  # how much of its box the head fills
        float(mask[-3:].mean() > 0.05),  # open at the bottom edge (neck)
        *(width_per_row[int(f * (_CROP - 1))] for f in (0.05, 0.2, 0.5, 0.8, 0.95)),
    ]
    thumb = cv2.resize(crop, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).ravel()
    return np.concatenate([np.array(shape, np.float32), thumb])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation; 0 where either is constant (a blank picture: no symmetry to measure, not NaN)."""
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def fit_estimator(features: np.ndarray, planes: list[str], c: float = 0.3) -> dict:
    """Standardise and fit the logistic regression; return it as plain numbers (plane_model.json)."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=5000).fit((features - mean) / scale, planes)
    return {"classes": list(clf.classes_), "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist(), "C": c}


def predict_planes(features: np.ndarray, model: dict | None = None) -> tuple[list[str], np.ndarray]:
    """Plane names and their probabilities for an (N, F) feature array."""
    model = model or load_estimator()
    z = (features - np.array(model["mean"])) / np.array(model["scale"])
    logits = z @ np.array(model["coef"]).T + np.array(model["intercept"])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return [model["classes"][i] for i in probs.argmax(1)], probs


def load_estimator(path: Path = MODEL_FILE) -> dict:
    return json.loads(Path(path).read_text())


def read_planes(path: str | Path) -> dict[str, str]:
    """planes.csv (path relative to the data folder, plane) as a dict; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"planes file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "plane"} <= set(rows[0]):
        raise UserError(f"{path} must be a CSV with columns path,plane")
    bad = sorted({r["plane"] for r in rows} - set(PLANES))
    if bad:
        raise UserError(f"{path}: unknown plane(s) {bad} (known: {', '.join(PLANES)})")
    return {r["path"]: r["plane"] for r in rows}


def planes_for(path: str | Path, paths: list[str]) -> list[str]:
    """Each image's plane from a planes.csv ("" where it has none)."""
    known = read_planes(path)
    return [known.get(p, "") for p in paths]


def write_planes(path: Path, rows: list[tuple[str, str]], extra: dict[str, list] | None = None) -> None:
    """planes.csv: path, plane (and any extra columns, such as the estimator's confidence)."""
    extra = extra or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "plane", *extra])
        for i, (p, plane) in enumerate(rows):
            w.writerow([p, plane, *(v[i] for v in extra.values())])


def check_planes_output(out: Path, data: Path, force: bool) -> None:
    """Refuse, before any image is read, a planes file that cannot be written there (a folder, a missing
    folder), one inside the data, and a --force over a file this tool did not write (its header is not
    path,plane,probability: a hand-checked planes file has no probability)."""
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the planes file's name (planes.csv)")
    if not out.parent.is_dir():
        raise UserError(f"folder not found: {out.parent} (for {out})")
    if is_within(out, data):
        raise UserError(f"write {out} outside the input folder {data}")
    if out.exists() and not force:
        raise UserError(f"{out} exists: choose another file, or pass --force")
    if out.exists() and not _is_planes_file(out):
        raise UserError(f"{out} is not a planes file written by augment.py --estimate-planes (no path,plane,"
                        "probability header): --force replaces only such a file; choose another name")


def _is_planes_file(path: Path) -> bool:
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])[:3] == ["path", "plane", "probability"]  # as estimate_folder writes
    except (OSError, UnicodeDecodeError):
        return False


def estimate_folder(data: Path, out: Path, force: bool = False) -> dict[str, int]:
    """Write planes.csv for a dataset folder (never into it): every readable image's estimated plane and
    its probability; returns the count per plane."""
    check_planes_output(out, data, force)
    items, _ = find_images(data)
    rows, probs = [], []
    for rel, _, _ in tqdm(items, desc="estimate planes", unit="img", disable=None):
        try:
            feats = plane_features(decode(data / rel))[None]
        except ValueError as err:
            log.warning("skipped %s: %s", data / rel, err)
            continue
        name, p = predict_planes(feats)
        rows.append((rel, name[0]))
        probs.append(f"{p.max():.3f}")
    write_planes(out, rows, {"probability": probs})
    counts = {pl: sum(1 for _, x in rows if x == pl) for pl in PLANES}
    log.info("wrote %s: %d images, %s (estimated; %d skipped)", out, len(rows), counts, len(items) - len(rows))
    check = load_estimator()["check"]
    log.info("the estimator's accuracy on %d hand-checked slices: %.3f", check["images"], check["accuracy"])
    return counts
