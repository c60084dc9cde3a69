"""Dataset audit: perceptual hashes, near-duplicate groups, label conflicts, leakage and shortcuts.

Grouping never compares all pairs: a 64-bit hash is cut into (distance + 1) bands, and by the
pigeonhole principle two hashes within `distance` bits agree exactly on at least one band, so only
images sharing a band value are compared. The cost grows with the number of images, not its square.
"""

from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np

from .data import Dataset


def phash(image: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of an image (any size, RGB or grey)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def hash_images(images: np.ndarray) -> np.ndarray:
    return np.array([phash(im) for im in images], dtype=np.uint64)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def near_duplicate_pairs(hashes: np.ndarray, distance: int) -> set[tuple[int, int]]:
    """All pairs (i < j) whose hashes differ in at most `distance` bits, via band buckets."""
    bands = distance + 1
    edges = [int(e) for e in np.linspace(0, 64, bands + 1)]
    pairs = set()
    as_int = [int(h) for h in hashes]
    for lo, hi in zip(edges[:-1], edges[1:]):
        buckets = defaultdict(list)
        mask = (1 << (hi - lo)) - 1
        for i, h in enumerate(as_int):
            buckets[(h >> lo) & mask].append(i)
        for members in buckets.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    i, j = members[a], members[b]
                    if (i, j) not in pairs and bin(as_int[i] ^ as_int[j]).count("1") <= distance:
                        pairs.add((i, j))
    return pairs


def group_images(hashes: np.ndarray, md5: list[str], distance: int) -> np.ndarray:
    """Group id per image: exact copies (same MD5) and near-duplicates (transitively) share one."""
    uf = _UnionFind(len(hashes))
    first = {}
    for i, digest in enumerate(md5):
        uf.union(first.setdefault(digest, i), i)
    for i, j in near_duplicate_pairs(hashes, distance):
        uf.union(i, j)
    roots = [uf.find(i) for i in range(len(hashes))]
    renumber = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([renumber[r] for r in roots], np.int64)


def group_with_sources(hashes: np.ndarray, md5: list[str], distance: int, sources: np.ndarray) -> np.ndarray:
    """Groups of the original images (sources == -1) as group_images makes them, untouched by any copies;
    each augmented copy joins its source's group (a copy whose source is missing gets a group of its own)."""
    orig = np.flatnonzero(sources == -1)
    groups = np.empty(len(hashes), np.int64)
    groups[orig] = group_images(hashes[orig], [md5[i] for i in orig], distance)
    copies = np.flatnonzero(sources != -1)
    groups[copies] = np.where(sources[copies] >= 0, groups[np.maximum(sources[copies], 0)],
                              groups[orig].max(initial=-1) + 1 + np.arange(len(copies)))
    return groups


def size_shortcut_score(ds: Dataset, seed: int = 0) -> dict:
    """How well the original image size alone predicts the class (5-fold CV), against the majority class."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    h, w = ds.original_sizes[:, 0], ds.original_sizes[:, 1]
    features = np.stack([h, w, h / np.maximum(w, 1)], 1)
    counts = np.bincount(ds.labels)
    folds = max(2, min(5, int(counts[counts > 0].min())))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(RandomForestClassifier(100, random_state=seed, n_jobs=1), features, ds.labels, cv=cv)
    return {"size_only_accuracy": round(float(scores.mean()), 4), "majority_class_accuracy":
            round(float(counts.max() / counts.sum()), 4), "distinct_sizes": int(len(set(map(tuple, ds.original_sizes))))}


def audit(ds: Dataset, groups: np.ndarray) -> dict:
    """Duplicates, conflicts, Training/Testing leakage and the size shortcut, as one JSON-able dict."""
    labels, subsets = ds.labels, np.array(ds.subsets)
    by_md5 = defaultdict(list)
    for i, d in enumerate(ds.md5):
        by_md5[d].append(i)
    exact_sets = [v for v in by_md5.values() if len(v) > 1]
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    multi = [v for v in members.values() if len(v) > 1]
    conflicts = [[(ds.paths[i], ds.classes[labels[i]]) for i in v] for v in multi if len(set(labels[v])) > 1]
    report = {
        "images": len(ds.paths), "skipped_files": len(ds.skipped),
        "exact_duplicate_sets": len(exact_sets), "images_in_exact_duplicate_sets": sum(map(len, exact_sets)),
        "near_duplicate_groups": len(multi), "images_in_near_duplicate_groups": sum(map(len, multi)),
        "groups": int(groups.max() + 1) if len(groups) else 0,
        "label_conflict_groups": len(conflicts), "label_conflicts": conflicts,
        "shortcut": size_shortcut_score(ds),
    }
    if set(subsets) == {"Training", "Testing"}:
        train_groups = set(groups[subsets == "Training"])
        leaked = np.array([s == "Testing" and g in train_groups for s, g in zip(subsets, groups)])
        report["testing_with_near_duplicate_in_training"] = {
            ds.classes[c]: f"{int(leaked[labels == c].sum())}/{int(((subsets == 'Testing') & (labels == c)).sum())}"
            for c in range(len(ds.classes))}
        report["testing_with_near_duplicate_in_training_total"] = f"{int(leaked.sum())}/{int((subsets == 'Testing').sum())}"
    return report


def format_audit(report: dict) -> str:
    """A short human-readable summary of audit()."""
    lines = [f"audit: {report['images']} images, {report['skipped_files']} skipped",
             f"  exact duplicates: {report['exact_duplicate_sets']} sets, {report['images_in_exact_duplicate_sets']} images",
             f"  near-duplicate groups: {report['near_duplicate_groups']} groups, "
             f"{report['images_in_near_duplicate_groups']} images ({report['groups']} groups in all)",
             f"  label conflicts: {report['label_conflict_groups']} groups whose images carry different labels"]
    if "testing_with_near_duplicate_in_training" in report:
        per = ", ".join(f"{k} {v}" for k, v in report["testing_with_near_duplicate_in_training"].items())
        lines.append(f"  Testing images with a near-duplicate in Training: "
                     f"{report['testing_with_near_duplicate_in_training_total']} ({per})")
    s = report["shortcut"]
    lines.append(f"  shortcut: original size alone predicts the class with accuracy {s['size_only_accuracy']:.3f} "
                 f"(majority class {s['majority_class_accuracy']:.3f}; {s['distinct_sizes']} distinct sizes)")
    return "\n".join(lines)
