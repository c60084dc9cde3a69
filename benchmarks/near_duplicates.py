"""Near-duplicate search speed: the real dataset, then synthetic sets of signatures up to 100,000 images.

    python benchmarks/near_duplicates.py DATA [--sizes 10000 20000 40000 100000] [--json out.json]

Real data (3,264 images): decoding, canonical slices and copy views (from the decoded images), and
duplicates.group_images as train.py runs it, with its parts timed alone (retrieval, verification, the copy
check). The synthetic sets are real canonical slices, each repeated with noise and a small random shift, so
that every image has as many look-alikes as in the real data, run through the whole search; retrieval and
the keypoint codes' counts in common are chunked matrix products (quadratic in the number of images,
bounded memory), verification and the copy check are linear in the number of candidate pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri import duplicates  # noqa: E402
from brainmri.data import decode, find_images  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def real(root: Path) -> tuple[dict, np.ndarray]:
    """The pipeline as train.py runs it (canonical slices and copy views made from the decoded images, then
    duplicates.group_images), and its parts timed alone: retrieval, verification, and the copy check (the
    difference with it and without)."""
    from types import SimpleNamespace

    items, _ = find_images(root)
    t_decode, images = timed(lambda: [decode(root / rel) for rel, _, _ in items])
    t_canon, canon = timed(lambda: duplicates.canonical_slices(images))
    t_views, views = timed(lambda: duplicates.copy_views(images))
    ds = SimpleNamespace(canon=canon, copy_views=views, images=None, md5=[str(i) for i in range(len(images))])
    t_group, (groups, pairs, _) = timed(lambda: duplicates.group_images(ds))
    t_vec, vectors = timed(lambda: duplicates.retrieval_vectors(canon))
    t_ret, candidates = timed(lambda: duplicates.candidate_pairs(vectors))
    hint = duplicates.likely_zoom(vectors, vectors, candidates)
    t_ver, _ = timed(lambda: duplicates.verify(canon, canon, candidates, hint))
    t_without, _ = timed(lambda: duplicates.scored_pairs(canon))
    t_with, (all_pairs, _) = timed(lambda: duplicates.scored_pairs(canon, None, views))
    seconds = {"decode": t_decode, "canonical": t_canon, "copy_views": t_views, "group_images": t_group}
    parts = {"retrieval_vectors": t_vec, "retrieval": t_ret, "verification_of_the_main_view": t_ver,
             "copy_check": t_with - t_without}
    return {"images": len(images), "candidate_pairs": int(len(all_pairs)), "near_duplicate_pairs": int(len(pairs)),
            "groups": int(groups.max() + 1), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "parts_timed_alone": {k: round(v, 3) for k, v in parts.items()},
            "hash_and_group_seconds": round(t_canon + t_views + t_group, 3)}, canon


def synthetic(canon: np.ndarray, n: int, seed: int = 0) -> dict:
    """The whole search (duplicates.scored_pairs with the copy check, then grouping) on n synthetic images:
    real canonical slices, each repeated with noise and a small random shift, as 48 px slices and as copy
    views (upscaled from them: the copy check's work per pair is that of a real image)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = canon[rng.integers(0, len(canon), n)].astype(np.int16)
    shifted = np.stack([np.roll(b, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) for b in base])  # each its own
    fake = np.clip(shifted + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    views = duplicates.copy_views([cv2.resize(f, (150, 150), interpolation=cv2.INTER_LINEAR) for f in fake])
    t_vec, vectors = timed(lambda: duplicates.retrieval_vectors(fake))
    t_ret, _ = timed(lambda: duplicates.candidate_pairs(vectors))
    t_all, (pairs, scores) = timed(lambda: duplicates.scored_pairs(fake, None, views))
    keep = scores >= duplicates.SAME_OR_ADJACENT
    t_group, _ = timed(lambda: duplicates.groups_from_pairs(n, duplicates.joining_pairs(pairs[keep], scores[keep])))
    return {"images": n, "candidate_pairs": int(len(pairs)), "seconds": {
        "main_view_retrieval_alone": round(t_vec + t_ret, 2), "scored_pairs": round(t_all, 2),
        "grouping": round(t_group, 2), "total": round(t_all + t_group, 2)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--sizes", type=int, nargs="*", default=[10000, 20000, 40000])
    p.add_argument("--json")
    args = p.parse_args(argv)
    result, canon = real(Path(args.data))
    print(json.dumps(result))
    result["synthetic"] = []
    for n in args.sizes:
        result["synthetic"].append(synthetic(canon, n))
        print(json.dumps(result["synthetic"][-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
