"""Hold-out and k-fold splits, near-duplicate-aware (by group) or plain random, written as splits.csv."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from .errors import UserError

TEST, TRAIN, VAL, EXCLUDED = "test", "train", "val", "excluded"


def holdout(labels: np.ndarray, groups: np.ndarray, test_fraction: float, by_group: bool, seed: int) -> np.ndarray:
    """Boolean mask of the test images: stratified, and whole groups only when by_group."""
    idx = np.arange(len(labels))
    smallest = np.bincount(labels)[np.bincount(labels) > 0].min()
    if smallest * test_fraction < 1 or (by_group and smallest < round(1 / test_fraction)):
        raise UserError(f"a class has only {smallest} images: too few for a stratified test split of "
                        f"test_fraction {test_fraction}")
    if not by_group:
        _, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    else:
        n_splits = max(2, round(1 / test_fraction))
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
        _, test = next(splitter.split(idx, labels, groups))
    mask = np.zeros(len(labels), bool)
    mask[test] = True
    return mask


def kfold(labels: np.ndarray, groups: np.ndarray, folds: int, by_group: bool, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) of each image's validation turn: stratified, whole groups when by_group."""
    counts = np.bincount(labels)
    if counts[counts > 0].min() < folds:
        raise UserError(f"a class has only {counts[counts > 0].min()} images: too few for {folds} folds")
    splitter = (StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if by_group
                else StratifiedKFold(folds, shuffle=True, random_state=seed))
    fold_of = np.full(len(labels), -1)
    split_groups = groups if by_group else None  # StratifiedKFold warns when handed groups
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, split_groups)):
        fold_of[val] = k
    return fold_of


def make_roles(labels, groups, subsets, protocol: str, folds: int, test_fraction: float, by_group: bool,
               seed: int) -> np.ndarray:
    """See _make_roles; scikit-learn's complaints about too little data become one-line errors."""
    try:
        return _make_roles(labels, groups, subsets, protocol, folds, test_fraction, by_group, seed)
    except ValueError as err:
        raise UserError(f"cannot split this data ({protocol}, {folds} folds): {str(err).splitlines()[0]}") from None


def _make_roles(labels, groups, subsets, protocol: str, folds: int, test_fraction: float, by_group: bool,
                seed: int) -> np.ndarray:
    """Role of every image in every fold: an (N, folds) array of train / val / test / excluded.

    protocol "holdout": the study's merged data with a stratified 90/10 test split.
    protocol "testing_folder": the dataset's own Testing folder is the test set; with by_group,
    Training images whose near-duplicate group reaches into Testing are excluded, so that no test
    image is seen in training.
    """
    labels, groups, subsets = np.asarray(labels), np.asarray(groups), np.asarray(subsets)
    if protocol == "holdout":
        is_test = holdout(labels, groups, test_fraction, by_group, seed)
        usable = ~is_test
    else:
        if "Testing" not in set(subsets):
            raise UserError("protocol 'testing_folder' needs the Kaggle layout with a Testing/ folder")
        is_test = subsets == "Testing"
        usable = ~is_test
        if by_group:
            usable &= ~np.isin(groups, groups[is_test])
    fold_of = np.full(len(labels), -1)
    idx = np.flatnonzero(usable)
    fold_of[idx] = kfold(labels[idx], groups[idx], folds, by_group, seed)
    roles = np.full((len(labels), folds), EXCLUDED, dtype=object)
    for k in range(folds):
        roles[usable, k] = np.where(fold_of[usable] == k, VAL, TRAIN)
        roles[is_test, k] = TEST
    return roles


def write_splits(path: Path, paths, labels_named, subsets, groups, roles: np.ndarray) -> None:
    """splits.csv: one row per image with its group and its role in every fold (fold jobs rewrite it
    with the same content, so it is written to a temporary file and renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "subset", "group", *[f"fold{k}" for k in range(roles.shape[1])]])
        for row in zip(paths, labels_named, subsets, groups, *roles.T):
            w.writerow(row)
    tmp.replace(path)


def read_splits(path: Path) -> dict:
    """splits.csv back: paths, labels, subsets, groups and the (N, folds) roles."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{path} is empty")
    folds = sorted((k for k in rows[0] if k.startswith("fold")), key=lambda k: int(k[4:]))
    return {"paths": [r["path"] for r in rows], "labels": [r["label"] for r in rows],
            "subsets": [r["subset"] for r in rows], "groups": np.array([int(r["group"]) for r in rows]),
            "roles": np.array([[r[k] for k in folds] for r in rows], dtype=object)}


def role_counts(roles: np.ndarray, labels_named) -> list[dict]:
    """Counts per fold, role and class, for the data summary."""
    out = []
    labels_named = np.asarray(labels_named)
    for k in range(roles.shape[1]):
        for role in (TRAIN, VAL, TEST, EXCLUDED):
            sel = roles[:, k] == role
            row = {"fold": k, "role": role, "total": int(sel.sum())}
            row.update({c: int((labels_named[sel] == c).sum()) for c in sorted(set(labels_named))})
            out.append(row)
    return out
