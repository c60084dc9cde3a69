"""The hand-labelled near-duplicate pair benchmark: sample pairs to label, draw them as contact sheets, and
measure a detector against the labels.

    python tools/near_duplicate_benchmark.py sample DATA new_pairs.csv   # pairs to label (a new file)
    python tools/near_duplicate_benchmark.py sheets DATA data/near_duplicate_pairs.csv sheets/   # to look at
    python tools/near_duplicate_benchmark.py measure DATA data/near_duplicate_pairs.csv  # precision, recall
    python tools/near_duplicate_benchmark.py measure DATA data/near_duplicate_pairs.csv --scale 2  # another resolution

The CSV holds relative paths, the label (same | adjacent | different, given by looking at the pair), the
part (choose: thresholds are picked on it; report: only measured on) and why the pair was sampled. It holds
no image data. Sheets show pair numbers only, never a score, so that labels are not nudged by the detector.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri import duplicates  # noqa: E402
from brainmri.duplicates import phash, phash_pairs  # noqa: E402
from brainmri.data import decode, find_images  # noqa: E402
from brainmri.errors import UserError, cli_entry  # noqa: E402
from brainmri.metrics import wilson_interval  # noqa: E402

LABELS = ("same", "adjacent", "different")
PATIENT_LABELS = ("same", "different", "cannot_tell")  # the optional patient column: one person's head or not
PARTS = ("choose", "report", "stress")  # thresholds chosen on choose, measured on report; stress: its joins
FIELDS = ("pair", "a", "b", "label", "confidence", "part", "sampled_as", "note", "patient")
REQUIRED = ("pair", "a", "b", "label")  # what a file of labelled pairs must have (the rest is for people)
OLD_SIZE, OLD_DISTANCE = 150, 4  # the old detector: pHash of the 150 px resized image, distance <= 4


def load(root: Path) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    items, _ = find_images(root)
    paths = [rel for rel, _, _ in items]
    images = [decode(root / p) for p in tqdm(paths, desc="decode", unit="img", disable=None)]
    return paths, images, np.array(
        [phash(cv2.resize(im, (OLD_SIZE, OLD_SIZE), interpolation=cv2.INTER_AREA)) for im in images], np.uint64)


def hamming(a: np.uint64, b: np.uint64) -> int:
    return bin(int(a) ^ int(b)).count("1")


def sample(root: Path, out: Path, seed: int, per_bin: int) -> None:
    """Pairs across verified scores, pHash distances and easy negatives, each sampled once, shuffled."""
    refuse_existing(out)
    paths, images, hashes = load(root)
    canon = duplicates.canonical_slices(images)
    pairs, scores = duplicates.scored_pairs(canon)
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[int, int], str] = {}

    def take(candidates, why: str, n: int):
        candidates = [tuple(sorted(map(int, c))) for c in candidates if tuple(sorted(map(int, c))) not in chosen]
        for k in rng.permutation(len(candidates))[:n]:
            chosen[candidates[k]] = why

    edges = [-1, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01]
    for lo, hi in zip(edges[:-1], edges[1:]):
        near_threshold = 0.6 <= lo < 0.9
        take(pairs[(scores >= lo) & (scores < hi)], f"score {lo:.2f}-{hi:.2f}", per_bin * (2 if near_threshold else 1))
    ph = phash_pairs(hashes, 12)
    dist = np.array([hamming(hashes[i], hashes[j]) for i, j in ph])
    for lo, hi in ((0, 4), (5, 8), (9, 12)):
        take(ph[(dist >= lo) & (dist <= hi)], f"phash {lo}-{hi}", per_bin)
    random_pairs = rng.integers(0, len(paths), (per_bin * 4, 2))
    take(random_pairs[random_pairs[:, 0] != random_pairs[:, 1]], "random", per_bin)
    keys = list(chosen)
    order = rng.permutation(len(keys))
    rows = [{"pair": n, "a": paths[keys[k][0]], "b": paths[keys[k][1]], "label": "",
             "part": "choose" if n % 2 == 0 else "report", "sampled_as": chosen[keys[k]]} for n, k in enumerate(order)]
    write_rows(out, rows)
    print(f"{len(rows)} pairs written to {out}")


def refuse_existing(path: Path) -> None:
    """A pair file is written new, never over another: it may hold hours of labels."""
    if Path(path).exists():
        raise UserError(f"{path} exists (it may hold labels): give a new file name")


def write_rows(path: Path, rows: list[dict]) -> None:
    """The rows as a new pair file (FileExistsError if there is one: see refuse_existing)."""
    with open(path, "x", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def read_rows(path: Path) -> list[dict]:
    """The benchmark's rows (or another file of pairs labelled by eye, in its columns); a missing file or
    column, a label outside LABELS (a patient outside PATIENT_LABELS, a part outside PARTS), an image paired
    with itself or a pair given twice (either way round) is a one-line error: each would be miscounted."""
    if not path.is_file():
        raise UserError(f"pair benchmark not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (a pair file needs {', '.join(REQUIRED)})")
    for r in rows:
        if r["label"] and r["label"] not in LABELS:
            raise UserError(f"{path}: pair {r['pair']} has label {r['label']!r}, not one of {', '.join(LABELS)}")
        if r.get("patient") and r["patient"] not in PATIENT_LABELS:
            raise UserError(f"{path}: pair {r['pair']} has patient {r['patient']!r}, not one of "
                            f"{', '.join(PATIENT_LABELS)} (or empty)")
        if r.get("part") and r["part"] not in PARTS:
            raise UserError(f"{path}: pair {r['pair']} has part {r['part']!r}, not one of {', '.join(PARTS)}")
    seen: dict[frozenset, str] = {}
    for r in rows:
        if r["a"] == r["b"]:
            raise UserError(f"{path}: pair {r['pair']} joins {r['a']} with itself")
        key = frozenset((r["a"], r["b"]))
        if key in seen:
            raise UserError(f"{path}: pairs {seen[key]} and {r['pair']} are one pair ({r['a']}, {r['b']})")
        seen[key] = r["pair"]
    return rows


def tile(image: np.ndarray, side: int) -> np.ndarray:
    """The image fitted (aspect kept) into a side x side black square, with its size written on it."""
    h, w = image.shape[:2]
    f = side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    out = np.zeros((side, side, 3), np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    cv2.putText(out, f"{w}x{h}", (4, side - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 200, 255), 1, cv2.LINE_AA)
    return out


def sheets(root: Path, csv_path: Path, out: Path, per_sheet: int, side: int) -> None:
    """Contact sheets of `per_sheet` pairs (two pairs a row), each pair numbered, no score shown."""
    rows = read_rows(csv_path)
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(rows), per_sheet):
        cells = []
        for r in rows[start:start + per_sheet]:
            pair = np.hstack([tile(decode(root / r["a"]), side), np.full((side, 4, 3), 255, np.uint8),
                              tile(decode(root / r["b"]), side)])
            label = np.zeros((22, pair.shape[1], 3), np.uint8)
            cv2.putText(label, f"pair {r['pair']}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
            cells.append(np.vstack([label, pair]))
        while len(cells) % 2:
            cells.append(np.zeros_like(cells[0]))
        gap = np.full((cells[0].shape[0], 16, 3), 90, np.uint8)
        grid = np.vstack([np.hstack([cells[k], gap, cells[k + 1]]) for k in range(0, len(cells), 2)])
        cv2.imwrite(str(out / f"sheet_{start // per_sheet:03d}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"{(len(rows) + per_sheet - 1) // per_sheet} sheets in {out}")


def precision_recall(truth: np.ndarray, said: np.ndarray, clusters: np.ndarray | None = None) -> dict:
    """Precision and recall with 95% Wilson intervals ((0, 1) where there is none). clusters: a cluster id per
    labelled pair (pair_clusters): pairs that share an image are not independent draws, so the intervals are
    taken at the effective number of pairs of clusters whose pairs always agree (metrics.wilson_interval:
    conservative); None: every pair a draw of its own."""
    tp, fp, fn = int((truth & said).sum()), int((~truth & said).sum()), int((truth & ~said).sum())

    def interval(among: np.ndarray, hit: np.ndarray) -> tuple[float, float]:
        low, high = wilson_interval(hit[among], None if clusters is None else clusters[among])
        return round(low, 4), round(high, 4)

    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "tp": tp, "fp": fp, "fn": fn,
            "precision_ci": interval(said, truth), "recall_ci": interval(truth, said)}


def patient_precision(truth: np.ndarray, one_patient: np.ndarray, grouped: np.ndarray,
                      clusters: np.ndarray | None = None) -> dict:
    """Group precision with the pairs labelled different that two looks call one patient (the patient column)
    counted right: grouping them leaks no other patient into a test set. Precision only: the patient column
    is filled for the pairs a detector joined, so a recall on it would not mean anything."""
    right = truth | one_patient
    tp, fp = int((right & grouped).sum()), int((~right & grouped).sum())
    return {"precision": tp / max(tp + fp, 1), "tp": tp, "fp": fp,
            "precision_ci": precision_recall(right, grouped, clusters)["precision_ci"]}


def pair_clusters(pairs: np.ndarray) -> np.ndarray:
    """A cluster id per labelled pair (i, j): pairs joined through the images they share are one cluster."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros(0, np.int64)
    _, ends = np.unique(pairs, return_inverse=True)
    ends = ends.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(ends)), (ends[:, 0], ends[:, 1])), shape=(ends.max() + 1,) * 2)
    return connected_components(graph, directed=False)[1][ends[:, 0]]


def rescaled(image: np.ndarray, scale: float) -> np.ndarray:
    """The image at `scale` times its size (area interpolation to shrink, cubic to enlarge)."""
    if scale == 1:
        return image
    size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def measure(root: Path, csv_path: Path, scale: float = 1.0) -> dict:
    """Precision and recall for 'same or adjacent slice' of the old and the new detector as the pipeline runs
    them on the whole dataset (retrieval included): per pair (the pair was found) and per group (the two
    images ended up in one group, which is what the splits use), for each part of the benchmark. `scale`:
    every image resized by this factor first (the labels hold at any resolution; the detector's thresholds
    were chosen at the resolution of the shared copy)."""
    rows = [r for r in read_rows(csv_path) if r["label"]]
    if not rows:
        raise UserError(f"{csv_path} has no labelled pair")
    outside = next((r for r in rows if r.get("part") not in ("choose", "report")), None)
    if outside is not None:
        raise UserError(f"{csv_path}: no column part: measuring needs each pair in the choose or the report half"
                        if "part" not in outside else f"{csv_path}: pair {outside['pair']} is in part "
                        f"{outside['part']!r}: measuring needs each pair in the choose or the report half")
    items, _ = find_images(root)
    paths = [rel for rel, _, _ in items]
    index = {p: i for i, p in enumerate(paths)}
    for r in rows:
        for p in (r["a"], r["b"]):
            if p not in index:
                raise UserError(f"{csv_path}: pair {r['pair']}: {p} is not in {root} (paths are relative to it)")
    images = [rescaled(decode(root / p), scale) for p in tqdm(paths, desc="decode", unit="img", disable=None)]
    ds = SimpleNamespace(images=[cv2.resize(im, (OLD_SIZE, OLD_SIZE), interpolation=cv2.INTER_AREA) for im in images],
                         canon=duplicates.canonical_slices(images), copy_views=duplicates.copy_views(images),
                         md5=[hashlib.md5((root / p).read_bytes()).hexdigest() for p in paths])
    labelled = np.array([(index[r["a"]], index[r["b"]]) for r in rows])
    truth = np.array([r["label"] in ("same", "adjacent") for r in rows])
    same = np.array([r["label"] == "same" for r in rows])
    one_patient = np.array([r.get("patient") == "same" for r in rows])
    part = np.array([r["part"] for r in rows])
    clusters = {p_name: pair_clusters(labelled[part == p_name]) for p_name in ("choose", "report")}  # each part alone
    labels = np.array([label for _, label, _ in items])
    out: dict = {}
    for name, detector in (("old_phash_le_4", duplicates.Detector("phash", hash_distance=OLD_DISTANCE)),
                           ("new", duplicates.Detector())):
        groups, pairs, scores = duplicates.group_images(ds, detector)
        said = said_of(labelled, pairs, scores, groups, same_slice=detector.method != "phash")
        sizes = np.bincount(groups)
        out[name] = {"groups": int(len(sizes)), "largest_group": int(sizes.max()),
                     "groups_with_two_labels": int(sum(len(set(labels[groups == g])) > 1
                                                       for g in np.flatnonzero(sizes > 1)))}
        for p_name in ("choose", "report"):
            sel = part == p_name
            out[name][p_name] = {k: precision_recall((same if k == "same_slice_pair" else truth)[sel], v[sel],
                                                     clusters[p_name]) for k, v in said.items()}
            if name == "new":  # the patient column was filled for this detector's false groups only
                out[name][p_name]["group_patient_precision"] = patient_precision(truth[sel], one_patient[sel],
                                                                                 said["group"][sel], clusters[p_name])
    out["scale"] = scale
    out["pairs"] = {p_name: {"pairs": int((part == p_name).sum()), "positives": int(truth[part == p_name].sum()),
                             "same_slice": int(same[part == p_name].sum()),
                             "clusters": int(len(np.unique(clusters[p_name])))} for p_name in ("choose", "report")}
    return out


def said_of(labelled: np.ndarray, pairs: np.ndarray, scores: np.ndarray, groups: np.ndarray,
            same_slice: bool) -> dict[str, np.ndarray]:
    """What a detector said about each labelled pair (i, j): found as a pair, put in one group, and (same_slice)
    found at SAME_SLICE or above. The scores stay float32, as the detector compares them: a copy raised to
    SAME_SLICE is float32(0.9), which as a Python float is below 0.9."""
    found = {tuple(sorted(map(int, p))): s for p, s in zip(pairs, np.asarray(scores, np.float32))}
    keys = [tuple(sorted(map(int, p))) for p in labelled]
    score = np.array([found.get(k, -1.0) for k in keys], np.float32)
    said = {"pair": np.array([k in found for k in keys], bool),
            "group": groups[labelled[:, 0]] == groups[labelled[:, 1]]}
    if same_slice:
        said["same_slice_pair"] = score >= np.float32(duplicates.SAME_SLICE)
    return said


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    both = argparse.ArgumentParser(add_help=False)  # every subcommand reads the dataset and the pair file
    both.add_argument("data", help="the dataset (Training/, Testing/)")
    both.add_argument("csv", help="the pair file (data/near_duplicate_pairs.csv)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", parents=[both], help="draw pairs to label across score bands")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--per-bin", type=int, default=24)
    s = sub.add_parser("sheets", parents=[both], help="contact sheets of the pairs, for labelling by eye")
    s.add_argument("out")
    s.add_argument("--per-sheet", type=int, default=8)
    s.add_argument("--side", type=int, default=256)
    s = sub.add_parser("measure", parents=[both], help="precision and recall of the old and the new detector")
    s.add_argument("--json", help="write the figures here too")
    s.add_argument("--scale", type=float, default=1.0, help="resize every image by this factor first")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "sample":
        sample(Path(args.data), Path(args.csv), args.seed, args.per_bin)
    elif args.command == "sheets":
        sheets(Path(args.data), Path(args.csv), Path(args.out), args.per_sheet, args.side)
    else:
        start = time.perf_counter()
        if not 0.1 <= args.scale <= 8:
            raise UserError(f"--scale {args.scale}: give a factor from 0.1 to 8")
        result = measure(Path(args.data), Path(args.csv), args.scale)
        for name in ("old_phash_le_4", "new"):
            r = result[name]
            print(f"{name}: {r['groups']} groups, largest {r['largest_group']}, {r['groups_with_two_labels']} "
                  "with two labels")
            for part in ("choose", "report"):
                n = result["pairs"][part]
                print(f"  {part} ({n['pairs']} pairs in {n['clusters']} clusters sharing images, {n['positives']} "
                      f"same or adjacent, {n['same_slice']} same):")
                for k, m in r[part].items():
                    if k == "group_patient_precision":
                        lo, hi = m["precision_ci"]
                        print(f"    group, a pair two looks call one patient counted right: precision "
                              f"{m['precision']:.3f} ({lo:.3f}-{hi:.3f}) (tp {m['tp']}, fp {m['fp']})")
                        continue
                    (p_lo, p_hi), (r_lo, r_hi) = m["precision_ci"], m["recall_ci"]
                    print(f"    {k:16} precision {m['precision']:.3f} ({p_lo:.3f}-{p_hi:.3f}) recall {m['recall']:.3f} "
                          f"({r_lo:.3f}-{r_hi:.3f}) (tp {m['tp']}, fp {m['fp']}, fn {m['fn']}; 95% Wilson intervals "
                          "over the clusters)")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
