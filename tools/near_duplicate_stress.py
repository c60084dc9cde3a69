"""Stress test of the near-duplicate detector: copies made at known strengths must join their source's group,
and distinct images must stay apart.

    python tools/near_duplicate_stress.py DATA --sources 300 --distinct 300 [--method robust|phash]

Sources and distinct images are real images with no loose pHash pair between any two of them (distance <= 12,
and different pixels): chosen without the detector under test, so some of them can still be adjacent
slices of one scan, which the detector rightly joins; the false-join share is an upper bound. Each source gets one copy per
transform and strength (rescale 60-130%, crop 5-20%, JPEG quality 30-90, shift, gamma/contrast, a text
watermark). Reported: the share of copies grouped with their source, per transform and strength, and the
share of distinct images (sources and the mixed-in ones) joined with another.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri import duplicates  # noqa: E402
from brainmri.data import decode, find_images  # noqa: E402
from brainmri.errors import cli_entry  # noqa: E402

STRENGTHS = {  # transform -> the strengths tested (the ranges, ends included)
    "rescale": (0.6, 0.8, 1.3),  # size factor, then JPEG quality 90
    "crop": (0.05, 0.1, 0.2),  # share of width and of height cut away, split at random between the sides
    "jpeg": (90, 50, 30),  # quality
    "shift": (0.03, 0.06, 0.1),  # share of the side, x and y, black fill, same canvas
    "gamma": (0.6, 1.5, 1.8),  # gamma, with a contrast stretch of 0.8-1.2 and offset of -15..15
    "watermark": (0.5, 0.8, 1.2),  # text scale (relative to a 256 px image), white at 60-100% opacity
    "stretch": (0.8, 1.25, 1.4),  # width factor, height kept (resized to a square by someone, say)
}


def transform(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of `image` (uint8 RGB) changed by one transform at one strength."""
    h, w = image.shape[:2]
    if kind == "rescale":
        out = cv2.resize(image, (max(16, round(w * strength)), max(16, round(h * strength))),
                         interpolation=cv2.INTER_AREA if strength < 1 else cv2.INTER_CUBIC)
        return jpeg(out, 90)
    if kind == "crop":
        cut_x, cut_y = round(w * strength), round(h * strength)
        left, top = int(rng.integers(0, cut_x + 1)), int(rng.integers(0, cut_y + 1))
        return image[top:h - (cut_y - top), left:w - (cut_x - left)].copy()
    if kind == "stretch":
        return cv2.resize(image, (max(16, round(w * strength)), h), interpolation=cv2.INTER_AREA)
    if kind == "jpeg":
        return jpeg(image, int(strength))
    if kind == "shift":
        dx, dy = (rng.choice([-1, 1], 2) * strength * np.array([w, h])).round()
        return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h))
    if kind == "gamma":
        alpha, beta = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
        out = 255.0 * (image / 255.0) ** strength * alpha + beta
        return np.clip(out, 0, 255).astype(np.uint8)
    if kind == "watermark":
        out = image.copy()
        scale = strength * max(h, w) / 256
        text = str(rng.choice(["Radiopaedia", "case 1234", "R", "L  T1 C+", "www.example.org"]))
        org = (int(rng.integers(0, max(1, w // 3))), int(rng.integers(h // 6, h)))
        layer = out.copy()
        cv2.putText(layer, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, round(2 * scale)),
                    cv2.LINE_AA)
        opacity = float(rng.uniform(0.6, 1.0))
        return cv2.addWeighted(layer, opacity, out, 1 - opacity, 0)
    raise ValueError(f"unknown transform {kind}")


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def distinct_images(root: Path, count: int, seed: int) -> list[np.ndarray]:
    """`count` real images, no two in one group of a loose grouping (so none is a copy of another)."""
    items, _ = find_images(root)
    images = [decode(root / rel) for rel, _, _ in tqdm(items, desc="decode", unit="img", disable=None)]
    ds = SimpleNamespace(canon=duplicates.canonical_slices(images), images=images,
                         md5=[hashlib.md5(im.tobytes()).hexdigest() for im in images])
    # chosen by the other detector (pHash, loosely), so that the false joins measured are not only those
    # the new detector already agrees are none
    pairs = [duplicates.Detector("phash", hash_distance=12).pairs(ds)[0]]
    neighbours: dict[int, set[int]] = {}
    for i, j in np.concatenate(pairs):
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    md5_seen, picked = set(), []
    for i in np.random.default_rng(seed).permutation(len(images)):  # greedy: no loose pair among the picked
        if not neighbours.get(int(i), set()) & set(picked) and ds.md5[i] not in md5_seen:
            picked.append(int(i))
            md5_seen.add(ds.md5[i])
        if len(picked) == count:
            break
    return [images[i] for i in picked]


def run(images: list[np.ndarray], n_sources: int, detector: duplicates.Detector, seed: int) -> dict:
    """Group sources, their copies and the other distinct images together; score the grouping."""
    rng = np.random.default_rng(seed)
    all_images, source_of, kinds = list(images), list(range(len(images))), [("original", 0)] * len(images)
    for s in range(n_sources):
        for kind, strengths in STRENGTHS.items():
            for strength in strengths:
                all_images.append(transform(images[s], kind, strength, rng))
                source_of.append(s)
                kinds.append((kind, strength))
    start = time.perf_counter()
    canon = duplicates.canonical_slices(all_images)
    ds = SimpleNamespace(canon=canon, images=all_images, md5=[str(i) for i in range(len(all_images))])
    groups, _, _ = duplicates.group_images(ds, detector)
    seconds = time.perf_counter() - start
    source_of, groups = np.array(source_of), np.array(groups)
    result = {"images": len(all_images), "sources": n_sources, "distinct": len(images), "seconds": round(seconds, 2),
              "method": detector.method, "threshold": detector.threshold, "copies_with_source": {}}
    copy = np.arange(len(images), len(all_images))
    joined = groups[copy] == groups[source_of[copy]]
    for kind, strengths in STRENGTHS.items():
        for strength in strengths:
            sel = np.array([kinds[i] == (kind, strength) for i in copy])
            result["copies_with_source"][f"{kind} {strength}"] = round(float(joined[sel].mean()), 4)
    # a distinct image is wrongly joined when its group holds another distinct image
    distinct_groups = groups[: len(images)]
    counts = np.bincount(distinct_groups)
    wrongly = counts[distinct_groups] > 1
    result["distinct_wrongly_joined"] = round(float(wrongly.mean()), 4)
    result["distinct_wrongly_joined_count"] = int(wrongly.sum())
    result["copies_with_source_all"] = round(float(joined.mean()), 4)
    return result


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--sources", type=int, default=300, help="real images that get copies")
    p.add_argument("--distinct", type=int, default=300, help="further real images mixed in, without copies")
    p.add_argument("--method", default="robust", choices=("robust", "phash"))
    p.add_argument("--threshold", type=float, default=duplicates.SAME_OR_ADJACENT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result here too")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    images = distinct_images(Path(args.data), args.sources + args.distinct, args.seed)
    detector = duplicates.Detector(args.method, args.threshold, 4)
    result = run(images, min(args.sources, len(images)), detector, args.seed)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
