"""Near-duplicate search speed: the real dataset, then synthetic sets of signatures up to 100,000 images.

    python benchmarks/near_duplicates.py DATA [--sizes 10000 20000 40000 100000] [--json out.json]

Real data: decode, canonical slices, retrieval, verification and grouping, each timed (3,264 images). The
synthetic sets are real canonical slices, each repeated with noise and a small random shift, so that every
image has as many look-alikes as in the real data; retrieval is a chunked matrix product (quadratic in the
number of images, bounded memory), verification is linear in the number of candidate pairs.
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
    items, _ = find_images(root)
    t_decode, images = timed(lambda: [decode(root / rel) for rel, _, _ in items])
    t_canon, canon = timed(lambda: duplicates.canonical_slices(images))
    t_vec, vectors = timed(lambda: duplicates.retrieval_vectors(canon))
    t_ret, pairs = timed(lambda: duplicates.candidate_pairs(vectors))
    hint = duplicates.likely_zoom(vectors, vectors, pairs)
    t_ver, scores = timed(lambda: duplicates.verify(canon, canon, pairs, hint))
    keep = pairs[scores >= duplicates.SAME_OR_ADJACENT]
    t_group, _ = timed(lambda: duplicates.groups_from_pairs(len(canon), keep))
    seconds = {"decode": t_decode, "canonical": t_canon, "vectors": t_vec, "retrieval": t_ret,
               "verification": t_ver, "grouping": t_group}
    return {"images": len(images), "candidate_pairs": int(len(pairs)), "seconds": {k: round(v, 3) for k, v in
            seconds.items()}, "hash_and_group_seconds": round(sum(seconds.values()) - t_decode, 3)}, canon


def synthetic(canon: np.ndarray, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    base = canon[rng.integers(0, len(canon), n)].astype(np.int16)
    shifted = np.stack([np.roll(b, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) for b in base])  # each its own
    fake = np.clip(shifted + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    t_vec, vectors = timed(lambda: duplicates.retrieval_vectors(fake))
    t_ret, pairs = timed(lambda: duplicates.candidate_pairs(vectors))
    hint = duplicates.likely_zoom(vectors, vectors, pairs)
    t_ver, scores = timed(lambda: duplicates.verify(fake, fake, pairs, hint))
    t_group, _ = timed(lambda: duplicates.groups_from_pairs(n, pairs[scores >= duplicates.SAME_OR_ADJACENT]))
    return {"images": n, "candidate_pairs": int(len(pairs)), "seconds": {
        "vectors": round(t_vec, 2), "retrieval": round(t_ret, 2), "verification": round(t_ver, 2),
        "grouping": round(t_group, 2), "total": round(t_vec + t_ret + t_ver + t_group, 2)}}


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
