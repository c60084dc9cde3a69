"""Dataset audit: exact and near-duplicate groups, label conflicts, Training/Testing leakage and the
size shortcut. Near-duplicates come from brainmri.duplicates; this module only reports on them."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

from .data import Dataset
from .duplicates import Detector


def size_shortcut_score(ds: Dataset, groups: np.ndarray, seed: int = 0) -> dict:
    """How well the original image size alone predicts the class, against the majority class. Cross-validated
    by near-duplicate group: with plain folds, copies of a test image teach the forest its size."""
    h, w = ds.original_sizes[:, 0], ds.original_sizes[:, 1]
    features = np.stack([h, w, h / np.maximum(w, 1)], 1)
    counts = np.bincount(ds.labels)
    folds = min(5, int(counts[counts > 0].min()), len(set(groups)))
    if folds < 2:
        return {"size_only_accuracy": None, "majority_class_accuracy": round(float(counts.max() / counts.sum()), 4),
                "distinct_sizes": int(len(set(map(tuple, ds.original_sizes)))), "note": "too few groups to score"}
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(RandomForestClassifier(100, random_state=seed, n_jobs=1), features, ds.labels,
                             groups=groups, cv=cv)
    return {"size_only_accuracy": round(float(scores.mean()), 4), "majority_class_accuracy":
            round(float(counts.max() / counts.sum()), 4), "distinct_sizes": int(len(set(map(tuple, ds.original_sizes))))}


def label_conflicts(ds: Dataset, pairs: np.ndarray, scores: np.ndarray, detector: Detector) -> list[dict]:
    """Pairs that are surely one picture or one scan (byte-identical, or verified as the same slice: on the
    labelled pairs, the same slice or else an adjacent one of the same scan) with different labels: the
    evidence a person checks, one row per pair."""
    rows, seen = [], set()
    by_md5 = defaultdict(list)
    for i, d in enumerate(ds.md5):
        by_md5[d].append(i)
    candidates = [(v[0], j, 1.0, "byte-identical") for v in by_md5.values() for j in v[1:]]
    sure = detector.same_slice(scores)
    candidates += [(int(i), int(j), float(s), "same slice") for (i, j), s, ok in zip(pairs, scores, sure) if ok]
    for i, j, score, why in sorted(candidates, key=lambda c: -c[2]):
        key = tuple(sorted((ds.md5[i], ds.md5[j])))  # one row per pair of files, not per byte-identical copy
        if ds.labels[i] != ds.labels[j] and key not in seen:
            seen.add(key)
            rows.append({"a": ds.paths[i], "label_a": ds.classes[ds.labels[i]], "b": ds.paths[j],
                         "label_b": ds.classes[ds.labels[j]], "score": round(score, 4), "evidence": why})
    return rows


def audit(ds: Dataset, groups: np.ndarray, pairs: np.ndarray | None = None, scores: np.ndarray | None = None,
          detector: Detector = Detector()) -> dict:
    """Duplicates, conflicts, Training/Testing leakage and the size shortcut, as one JSON-able dict."""
    pairs = np.zeros((0, 2), np.int64) if pairs is None else pairs
    scores = np.zeros(len(pairs), np.float32) if scores is None else scores
    labels, subsets = ds.labels, np.array(ds.subsets)
    by_md5 = defaultdict(list)
    for i, d in enumerate(ds.md5):
        by_md5[d].append(i)
    exact_sets = [v for v in by_md5.values() if len(v) > 1]
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    multi = [v for v in members.values() if len(v) > 1]
    conflicts = label_conflicts(ds, pairs, scores, detector)
    report = {
        "images": len(ds.paths), "skipped_files": len(ds.skipped),
        "exact_duplicate_sets": len(exact_sets), "images_in_exact_duplicate_sets": sum(map(len, exact_sets)),
        "near_duplicate_groups": len(multi), "images_in_near_duplicate_groups": sum(map(len, multi)),
        "groups": int(groups.max() + 1) if len(groups) else 0,
        "groups_with_mixed_labels": sum(len(set(labels[v])) > 1 for v in multi),
        "label_conflict_pairs": len(conflicts), "label_conflicts": conflicts,
        "near_duplicate_method": detector.method, "near_duplicate_threshold": detector.threshold,
        "shortcut": size_shortcut_score(ds, groups),
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
             f"  label conflicts: {report['label_conflict_pairs']} pairs of the same slice with different labels "
             f"(figures/label_conflicts.png); {report['groups_with_mixed_labels']} groups hold more than one label "
             "(adjacent slices of one scan can)"]
    if "testing_with_near_duplicate_in_training" in report:
        per = ", ".join(f"{k} {v}" for k, v in report["testing_with_near_duplicate_in_training"].items())
        lines.append(f"  Testing images with a near-duplicate in Training: "
                     f"{report['testing_with_near_duplicate_in_training_total']} ({per})")
    s = report["shortcut"]
    score = "n/a (too few groups)" if s["size_only_accuracy"] is None else f"{s['size_only_accuracy']:.3f}"
    lines.append(f"  shortcut: original size alone predicts the class with accuracy {score} (group-wise CV; "
                 f"majority class {s['majority_class_accuracy']:.3f}; {s['distinct_sizes']} distinct sizes)")
    return "\n".join(lines)
