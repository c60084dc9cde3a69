"""The images a trained run is tested on, in one place: the run's own test set (role test in splits.csv, the
same in every fold) and external folders, each with what the reports need: labels in the model's classes,
whether a fold model trained on a near-duplicate of the image, its slice plane, its near-duplicate group."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import BINARY_CLASSES, Dataset, load_dataset, negative_class_of, take, to_binary
from .duplicates import Detector, copies_in, group_images
from .errors import UserError
from .planes import planes_for
from .splits import TEST, TRAIN, content_changes, data_changes, read_splits


@dataclass
class TestSet:
    """One test set of a run, as evaluate.py and binary_task.py score it."""

    name: str  # "test" (the run's own) or "external"
    root: Path  # the folder the paths are relative to
    paths: list[str]
    labels: np.ndarray  # class index among the model's classes
    images: np.ndarray  # uint8, at the model's input size
    trained_copy: np.ndarray  # bool: a fold model trained on a near-duplicate (or exact copy) of the image
    planes: list[str]  # slice plane, "" where unknown
    groups: np.ndarray | None  # near-duplicate group ids (what the bootstrap resamples); None: not computed
    skipped: list = dataclasses.field(default_factory=list)  # (path, reason) of an external folder's unused files


def test_rows(splits: dict) -> np.ndarray:
    """Indices of the test images in splits.csv (role test: the same in every fold)."""
    return np.flatnonzero(splits["roles"][:, 0] == TEST)


def trained_mask(roles: np.ndarray, folds=None) -> np.ndarray:
    """Which images the given folds (default: all) trained on."""
    folds = range(roles.shape[1]) if folds is None else list(folds)
    return (roles[:, folds] == TRAIN).any(1)


def duplicate_flags_from_splits(splits: dict, test_paths: list[str], folds: list[int]) -> np.ndarray:
    """Whether each test image shares a near-duplicate group with a training image of the given folds."""
    train_groups = set(splits["groups"][trained_mask(splits["roles"], folds)])
    group_of = dict(zip(splits["paths"], splits["groups"]))
    return np.array([group_of[p] in train_groups for p in test_paths])


def own_test_set(run_dir: Path, ds: Dataset, folds: list[int]) -> TestSet:
    """The run's test images among `ds` (the run's data, see pipeline.load_data), flagged against the
    training images of `folds`."""
    s = read_splits(run_dir / "splits.csv")
    _check_test_images(run_dir / "splits.csv", s, ds)
    idx = np.flatnonzero(np.isin(ds.paths, [s["paths"][i] for i in test_rows(s)]))
    paths = [ds.paths[i] for i in idx]
    plane_of, group_of = dict(zip(s["paths"], s["planes"])), dict(zip(s["paths"], s["groups"]))
    return TestSet("test", ds.root, paths, ds.labels[idx], ds.images[idx],
                   duplicate_flags_from_splits(s, paths, folds), [plane_of[p] for p in paths],
                   np.array([group_of[p] for p in paths]))


def _check_test_images(path: Path, splits: dict, ds: Dataset) -> None:
    """Refuse a data folder that lost, or relabelled, a test image of the run: scored on what is left, the
    report would describe another test set than the one the run's folds were chosen around."""
    tested = {splits["paths"][i]: splits["labels"][i] for i in test_rows(splits)}
    now = {p: ds.classes[y] for p, y in zip(ds.paths, ds.labels) if p in tested}
    _, missing, relabelled = data_changes(tested, now)
    if missing or relabelled:
        raise UserError(f"{len(missing)} of the {len(tested)} test images in {path} are missing from the data folder "
                        f"(or unreadable, or outside its subset_fraction share) and {len(relabelled)} changed class "
                        f"(first: {(missing + relabelled)[0]}): restore the data folder as the run had it")
    replaced = [p for p in content_changes(splits, dict(zip(ds.paths, ds.md5))) if p in tested]
    if replaced:
        raise UserError(f"{len(replaced)} of the {len(tested)} test images in {path} changed content under the same "
                        f"name (first: {replaced[0]}): the run held out the images as they were; restore the data "
                        "folder as the run had it")


def load_external(folder: str | Path, size: int, classes, cache_dir=None) -> Dataset:
    """An external folder of class folders, labelled in the model's `classes`: for a tumor-vs-no-tumor model
    any folders, one of them the no-tumor class (yes/ and no/, ...); otherwise a subset of the classes."""
    ext = load_dataset(folder, size, cache_dir=cache_dir, kind="test")
    if tuple(classes) == BINARY_CLASSES:
        return to_binary(ext, negative_class_of(ext.classes))
    unknown = sorted(set(ext.classes) - set(classes))
    if unknown:
        raise UserError(f"classes {unknown} in {folder} are not classes of the model ({list(classes)})")
    labels = np.array([list(classes).index(ext.classes[y]) for y in ext.labels], np.int32)
    return dataclasses.replace(ext, labels=labels, classes=tuple(classes))


def external_test_set(folder: str | Path, size: int, classes, cfg: Config, trained: Dataset | None = None,
                      cache_dir=None, grouped: bool = True) -> TestSet:
    """An external folder as a test set: `trained`, the images the fold models trained on (None: no run),
    flags its copies; its planes.csv, if any, gives planes; `grouped`: near-duplicate groups, by the run's
    detector."""
    ext = load_external(folder, size, classes, cache_dir)
    detector = Detector.of(cfg)
    copies = copies_in(trained, ext, detector) if trained is not None else np.zeros(len(ext.paths), bool)
    planes_csv = Path(folder) / "planes.csv"
    planes = planes_for(planes_csv, ext.paths) if planes_csv.is_file() else [""] * len(ext.paths)
    groups = group_images(ext, detector)[0] if grouped else None
    return TestSet("external", Path(folder), ext.paths, ext.labels, ext.images, copies, planes, groups, ext.skipped)


def trained_images(run_dir: Path, ds: Dataset) -> Dataset:
    """The images of `ds` that some fold of the run trained on (splits.csv)."""
    s = read_splits(run_dir / "splits.csv")
    trained = [p for p, t in zip(s["paths"], trained_mask(s["roles"])) if t]
    return take(ds, np.flatnonzero(np.isin(ds.paths, trained)))


def groups_of(run_dir: Path | None, paths: list[str]) -> np.ndarray | None:
    """The images' near-duplicate group ids from the run's splits.csv; None unless every image is listed."""
    if run_dir is None or not (run_dir / "splits.csv").is_file():
        return None
    s = read_splits(run_dir / "splits.csv")
    by_path = dict(zip(s["paths"], s["groups"].tolist()))
    ids = [by_path.get(p) for p in paths]
    return None if None in ids else np.array(ids)


def round_robin_by_class(rows: list, label=lambda row: row[2]) -> list:
    """The rows taken class by class in turn, so that a limited sample shows every class, not the first one."""
    by_class: dict = {}
    for row in rows:
        by_class.setdefault(label(row), []).append(row)
    queues = list(by_class.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
