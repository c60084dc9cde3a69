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
    if smallest * test_fraction < 1:
        raise UserError(f"a class has only {smallest} images: too few for a stratified test split of "
                        f"test_fraction {test_fraction}")
    if by_group:
        return _group_holdout(labels, groups, test_fraction, seed)
    _, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    mask = np.zeros(len(labels), bool)
    mask[test] = True
    return mask


def _group_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Test mask of whole groups, per class (a group counts for its most frequent label): groups are taken in
    a seeded order whenever one brings the class's test count closer to fraction x its images, so each class
    ends within half a group of the request. (StratifiedGroupKFold's first fold can only give 1/k: 0.15 became
    1/7 = 0.143 and 0.4 became 0.5.)"""
    uniq, inv = np.unique(groups, return_inverse=True)
    size = np.bincount(inv)
    per_label = np.zeros((len(uniq), labels.max() + 1), np.int64)
    np.add.at(per_label, (inv, labels), 1)
    major = per_label.argmax(1)
    rng = np.random.default_rng(seed)
    take = np.zeros(len(uniq), bool)
    for c in np.unique(major):
        members = rng.permutation(np.flatnonzero(major == c))
        target, got = fraction * size[members].sum(), 0
        for g in members:
            if abs(got + size[g] - target) < abs(got - target):
                take[g], got = True, got + size[g]
        if not got:  # every group is bigger than twice the target: the smallest keeps the class in the test set
            take[members[np.argmin(size[members])]] = True
    return take[inv]


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
               seed: int, planes=None, train_planes=(), test_planes=(), sources=None) -> np.ndarray:
    """Roles of the original images (see _make_roles); an augmented copy (sources[i] = its source's index,
    -2 if the source is missing, -1 for originals) is trained on exactly where its source is, and is
    excluded everywhere else: never validated or tested on, never a leak. The originals' split is the one
    the dataset would get without the copies. scikit-learn's complaints become one-line errors."""
    n = len(labels)
    sources = np.full(n, -1) if sources is None else np.asarray(sources)
    orig = sources == -1
    planes = None if planes is None else np.asarray(planes)[orig]
    try:
        inner = _make_roles(np.asarray(labels)[orig], _renumber(np.asarray(groups)[orig]), np.asarray(subsets)[orig],
                            protocol, folds, test_fraction, by_group, seed, planes, train_planes, test_planes)
    except ValueError as err:
        raise UserError(f"cannot split this data ({protocol}, {folds} folds): {str(err).splitlines()[0]}") from None
    roles = np.full((n, folds), EXCLUDED, dtype=object)
    roles[orig] = inner
    for i in np.flatnonzero(sources >= 0):
        roles[i] = np.where(roles[sources[i]] == TRAIN, TRAIN, EXCLUDED)
    return roles


def check_every_class(roles: np.ndarray, labels, classes, protocol: str) -> None:
    """Refuse a split that leaves a class of the data without training images in some fold, or (but for
    protocol "all", whose test set is elsewhere) without test images: the model could not learn it, or the
    test accuracy would be over fewer classes than the run names (a planes file covering only some classes,
    say)."""
    labels = np.asarray(labels)
    for c in np.unique(labels):
        mine = roles[labels == c]
        if not (mine == TRAIN).any(axis=0).all():
            raise UserError(f"class {classes[c]} has no training image in some fold under protocol {protocol}: "
                            "check which of its images the protocol uses (for planes: the planes file's paths)")
        if protocol != "all" and not (mine == TEST).any():
            raise UserError(f"class {classes[c]} has no test image under protocol {protocol}")


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Group ids by first appearance, so the same images get the same split whatever else is in the folder."""
    first = {}
    return np.array([first.setdefault(g, len(first)) for g in groups], np.int64)


def _make_roles(labels, groups, subsets, protocol: str, folds: int, test_fraction: float, by_group: bool,
                seed: int, planes=None, train_planes=(), test_planes=()) -> np.ndarray:
    """Role of every image in every fold: an (N, folds) array of train / val / test / excluded.

    protocol "holdout": the study's merged data with a stratified 90/10 test split.
    protocol "testing_folder": the dataset's own Testing folder is the test set; with by_group,
    Training images whose near-duplicate group reaches into Testing are excluded, so that no test
    image is seen in training.
    protocol "planes": test on the images of `test_planes`, cross-validate on those of `train_planes`
    (excluding, with by_group, their near-duplicates of test images); other images are excluded.
    """
    labels, groups, subsets = np.asarray(labels), np.asarray(groups), np.asarray(subsets)
    is_test, usable = _test_and_usable(labels, groups, subsets, protocol, test_fraction, by_group, seed, planes,
                                       train_planes, test_planes)
    fold_of = np.full(len(labels), -1)
    idx = np.flatnonzero(usable)
    fold_of[idx] = kfold(labels[idx], groups[idx], folds, by_group, seed)
    roles = np.full((len(labels), folds), EXCLUDED, dtype=object)
    for k in range(folds):
        roles[usable, k] = np.where(fold_of[usable] == k, VAL, TRAIN)
        roles[is_test, k] = TEST
    return roles


def _test_and_usable(labels, groups, subsets, protocol: str, test_fraction: float, by_group: bool, seed: int,
                     planes, train_planes, test_planes) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's test images, and the images the cross-validation may use (see _make_roles)."""
    if protocol == "holdout":
        is_test = holdout(labels, groups, test_fraction, by_group, seed)
        usable = ~is_test
    elif protocol == "all":  # the test set is elsewhere (an external folder)
        is_test = np.zeros(len(labels), bool)
        usable = ~is_test
    elif protocol == "planes":
        planes = np.asarray(planes if planes is not None else [""] * len(labels))
        is_test = np.isin(planes, list(test_planes))
        usable = np.isin(planes, list(train_planes))
        if not is_test.any() or not usable.any():
            raise UserError(f"protocol 'planes': no image of planes {list(test_planes if not is_test.any() else train_planes)} "
                            "in the planes file")
        if by_group:
            usable &= ~np.isin(groups, groups[is_test])
    else:
        if "Testing" not in set(subsets):
            raise UserError("protocol 'testing_folder' needs the Kaggle layout with a Testing/ folder")
        is_test = subsets == "Testing"
        usable = ~is_test
        if by_group:
            usable &= ~np.isin(groups, groups[is_test])
    return is_test, usable


def write_splits(path: Path, paths, labels_named, subsets, groups, roles: np.ndarray, planes=None,
                 md5=None) -> None:
    """splits.csv: one row per image with its group, plane (if known), the MD5 of its file (if given: later
    jobs check the content is still the one split) and its role in every fold (fold jobs rewrite it with the
    same content, so it is written to a temporary file and renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    planes = planes if planes is not None else [""] * len(paths)
    md5 = md5 if md5 is not None else [""] * len(paths)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "subset", "group", "plane", "md5", *[f"fold{k}" for k in range(roles.shape[1])]])
        for row in zip(paths, labels_named, subsets, groups, planes, md5, *roles.T):
            w.writerow(row)
    tmp.replace(path)


def saved_splits(path: Path, paths, labels_named, md5=None) -> dict | None:
    """The splits a run folder already has (fold jobs, --resume), in the order of `paths`; None for a new run.
    They are reused, never recomputed (the grouping's floating point may differ on another machine). Refused
    when the data changed: finished folds were trained on the saved splits, so new ones could test on images
    that a fold trained on."""
    if not path.is_file():
        return None
    saved = read_splits(path)
    added, removed, changed = data_changes(dict(zip(saved["paths"], saved["labels"])), dict(zip(paths, labels_named)))
    replaced = content_changes(saved, dict(zip(paths, md5))) if md5 is not None else []
    if replaced:
        raise UserError(f"the data changed since {path} was written: {len(replaced)} changed content under the same "
                        f"name (first: {replaced[0]}); finished folds used the saved splits, chosen for the images "
                        "as they were: restore the data folder, or start a new run folder")
    if added or removed or changed:
        first = ([f"added {p}" for p in added[:1]] + [f"removed {p}" for p in removed[:1]] + changed[:1])[0]
        raise UserError(f"the data changed since {path} was written: {len(added)} images added, {len(removed)} "
                        f"removed, {len(changed)} changed label (first: {first}); finished folds used the saved "
                        "splits: restore the data folder, or start a new run folder")
    index = {p: i for i, p in enumerate(saved["paths"])}
    order = [index[p] for p in paths]
    return {"groups": saved["groups"][order], "roles": saved["roles"][order]}


def data_changes(saved: dict[str, str], now: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """What changed between two {path: class} maps of a data folder: the paths added, the paths removed, and
    "PATH was A, now B" for each path whose class changed."""
    added = [p for p in now if p not in saved]
    removed = [p for p in saved if p not in now]
    changed = [f"{p} was {saved[p]}, now {now[p]}" for p in now if p in saved and saved[p] != now[p]]
    return added, removed, changed


def content_changes(saved: dict, md5_now: dict[str, str]) -> list[str]:
    """The paths of splits.csv (`saved`, read_splits) whose file's MD5 is not the one recorded (runs made before
    the md5 column are not checked)."""
    return [p for p, digest in zip(saved["paths"], saved["md5"]) if digest and p in md5_now and md5_now[p] != digest]


def read_splits(path: Path) -> dict:
    """splits.csv back: paths, labels, subsets, groups and the (N, folds) roles."""
    if not path.is_file():
        raise UserError(f"{path} not found: the run folder is incomplete (its data was never split)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"{path} is empty")
    folds = sorted((k for k in rows[0] if k.startswith("fold")), key=lambda k: int(k[4:]))
    return {"paths": [r["path"] for r in rows], "labels": [r["label"] for r in rows],
            "subsets": [r["subset"] for r in rows], "groups": np.array([int(r["group"]) for r in rows]),
            "planes": [r.get("plane", "") for r in rows], "md5": [r.get("md5", "") for r in rows],
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
