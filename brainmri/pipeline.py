"""What every script does before training: find the data, load it, audit it, split it, record it."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import audit as audit_mod
from . import splits
from .config import Config
from .data import Dataset, find_images, load_dataset, negative_class_of, take, to_binary, write_skipped
from .duplicates import Detector, group_images, group_with_sources
from .errors import UserError
from .manifest import read_manifest, source_of
from .planes import PLANES, planes_for
from .atomic import write_atomic
from .synthetic import write_synthetic

log = logging.getLogger("brainmri")


@dataclass
class Prepared:
    ds: Dataset
    groups: np.ndarray
    roles: np.ndarray
    audit: dict


def data_root(cfg: Config) -> Path:
    """The data folder; for the synthetic demo set, generated once into the cache folder. Each job writes its
    own temporary folder and renames it into place; fold jobs starting together each write one, and the
    first rename wins (they are the same images), so none removes a set another is writing or reading."""
    if not cfg.synthetic:
        return Path(cfg.data_dir)
    root = Path(cfg.cache_dir) / f"synthetic-seed{cfg.seed}-n{cfg.synthetic_per_class}"
    if not (root / "planes.csv").is_file():
        if root.exists() and not (root / "planes.csv").is_file():  # (a set renamed into place has it)
            raise UserError(f"{root} is an unfinished synthetic set (no planes.csv): delete it and run again")
        tmp = root.with_name(f"{root.name}.{os.getpid()}.{threading.get_ident()}.partial")
        log.info("writing the synthetic dataset to %s", root)
        try:
            write_synthetic(tmp, cfg.synthetic_per_class, size=128, seed=cfg.seed)
            tmp.rename(root)
        except OSError:  # another job's set is in place already
            if not (root / "planes.csv").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # ours, whatever happened (gone once renamed)
    return root


def check_inputs(cfg: Config) -> None:
    """The cheap checks, before a run folder is made: backbone, weights file, data folders."""
    find_images(data_root(cfg), cfg.classes)  # first: it needs no TensorFlow, so the message comes at once
    if cfg.planes_file and not Path(cfg.planes_file).is_file():
        raise UserError(f"config key 'planes_file': file not found: {cfg.planes_file}")
    from .models import check_backbone

    check_backbone(cfg.backbone, cfg.weights)


def planes_of(cfg: Config, paths: list[str]) -> list[str] | None:
    """Each image's plane from the planes file ("" where it has none), or None without a planes file."""
    path = Path(cfg.planes_file) if cfg.planes_file else data_root(cfg) / "planes.csv"
    if not path.is_file():
        if cfg.planes_file or cfg.protocol == "planes":
            raise UserError(f"planes file not found: {path} (write one with: python augment.py DATA "
                            "--estimate-planes planes.csv, then set planes_file)")
        return None
    planes = planes_for(path, paths)
    log.info("planes from %s: %s; %d images without a plane", path,
             ", ".join(f"{pl} {planes.count(pl)}" for pl in PLANES), planes.count(""))
    return planes


def stratified_share(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified share of the images."""
    try:
        keep, _ = train_test_split(np.arange(len(labels)), train_size=fraction, stratify=labels, random_state=seed)
    except ValueError as err:  # scikit-learn: too few images kept for the classes, or a class of one image
        raise UserError(f"subset_fraction {fraction} of {len(labels)} images cannot keep every class "
                        f"(scikit-learn: {str(err).splitlines()[0]})") from None
    return np.sort(keep)


def load_data(cfg: Config) -> Dataset:
    """The run's images: the data folder at image_size, tumor vs no tumor for the binary task, and the
    subset_fraction share."""
    ds = load_dataset(data_root(cfg), cfg.image_size, cfg.classes, cfg.cache_dir)
    if cfg.task == "multiclass" and len(ds.classes) < 2:
        raise UserError(f"{data_root(cfg)} holds only one class ({ds.classes[0]}): a classifier needs two or more")
    if cfg.task == "binary":
        ds = to_binary(ds, negative_class_of(ds.classes, cfg.negative_class))
    if cfg.subset_fraction < 1:
        ds = take(ds, stratified_share(ds.labels, cfg.subset_fraction, cfg.seed))
        log.info("subset_fraction %g: %d images kept", cfg.subset_fraction, len(ds.paths))
    return ds


def prepare_data(cfg: Config, run_dir: Path) -> Prepared:
    """Load, hash, group, audit and split; write audit, splits and data summary into the run folder."""
    ds = load_data(cfg)
    named = [ds.classes[i] for i in ds.labels]
    saved = splits.saved_splits(run_dir / "splits.csv", ds.paths, named, ds.md5)  # before anything is rewritten
    if saved is not None:
        log.info("splits: the run folder's splits.csv (fold jobs and --resume never split again)")
        report = json.loads((run_dir / "audit.json").read_text()) if (run_dir / "audit.json").is_file() else {}
        return Prepared(ds, saved["groups"], saved["roles"], report)
    sources = source_of(ds.paths, read_manifest(data_root(cfg)))
    audit = _group_and_audit(cfg, ds, sources)
    planes = planes_of(cfg, ds.paths)
    roles = splits.make_roles(ds.labels, audit.groups, ds.subsets, cfg.protocol, cfg.folds, cfg.test_fraction,
                              cfg.split == "group", cfg.seed, planes, cfg.train_planes, cfg.test_planes, sources)
    splits.check_every_class(roles, ds.labels, ds.classes, cfg.protocol)
    _audit_figures(audit, run_dir / "figures", cfg.figure_formats)
    audit.report["test_split"] = test_split(cfg, roles, sources)
    write_atomic(run_dir / "audit.json", json.dumps(audit.report, indent=2))
    write_atomic(run_dir / "classes.json", json.dumps(list(ds.classes)))
    _write_data_summary(run_dir, ds, roles, named)
    # last: a run folder with splits.csv is resumed from it without this step, so the rest must be there by then
    splits.write_splits(run_dir / "splits.csv", ds.paths, named, ds.subsets, audit.groups, roles, planes, ds.md5)
    return Prepared(ds, audit.groups, roles, audit.report)


@dataclass
class _Audit:
    originals: Dataset  # the images as collected (no augmented copies)
    groups: np.ndarray  # near-duplicate group of every image, copies in their source's
    pairs: np.ndarray  # near-duplicate pairs among the originals, with their scores
    scores: np.ndarray
    report: dict  # audit.json


def _group_and_audit(cfg: Config, ds: Dataset, sources: np.ndarray) -> _Audit:
    """Near-duplicate groups (an augmented copy joins its source's) and the audit of the original images."""
    copies = np.flatnonzero(sources != -1)
    if len(copies):
        log.info("manifest.csv: %d augmented copies; each joins its source's group and is trained on only "
                 "where its source is", len(copies))
    originals = take(ds, np.flatnonzero(sources == -1))  # the audit describes the data as collected
    detector = Detector.of(cfg)
    start = time.perf_counter()
    orig_groups, pairs, scores = group_images(originals, detector)
    log.info("near-duplicates (%s): %d pairs in %.1f s", detector.method, len(pairs), time.perf_counter() - start)
    report = audit_mod.audit(originals, orig_groups, pairs, scores, detector)
    if len(copies):
        report["augmented_copies"] = int(len(copies))
    log.info(audit_mod.format_audit(report))
    return _Audit(originals, group_with_sources(orig_groups, sources), pairs, scores, report)


def _audit_figures(audit: _Audit, figures: Path, formats) -> None:
    """Examples of near-duplicate pairs, and the label conflicts if there are any."""
    from . import plots

    plots.near_duplicate_examples(audit.originals, audit.pairs, audit.scores, figures / "near_duplicate_pairs",
                                  formats=formats)
    if audit.report["label_conflicts"]:
        plots.label_conflicts(audit.originals, audit.report["label_conflicts"], figures / "label_conflicts",
                              formats=formats)


def test_split(cfg: Config, roles: np.ndarray, sources: np.ndarray) -> dict:
    """The test set's share of the original images (copies are never tested), logged beside the requested
    test_fraction: whole near-duplicate groups cannot hit it exactly."""
    orig = roles[sources == -1, 0]
    n_test = int((orig == splits.TEST).sum())
    out = {"protocol": cfg.protocol, "test_images": n_test, "images": len(orig),
           "actual_fraction": round(n_test / max(len(orig), 1), 4),
           "requested_fraction": cfg.test_fraction if cfg.protocol == "holdout" else None}
    wanted = f"test_fraction {cfg.test_fraction} requested" if cfg.protocol == "holdout" else f"protocol {cfg.protocol}"
    log.info("test set: %d of %d images, %.3f of the images (%s)", n_test, len(orig), n_test / max(len(orig), 1),
             wanted)
    return out


def _write_data_summary(run_dir: Path, ds: Dataset, roles: np.ndarray, named: list[str]) -> None:
    rows = splits.role_counts(roles, named)
    with open(run_dir / "data_summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_skipped(run_dir / "skipped.csv", ds.skipped)
    header = f"{'':10}" + "".join(f"{c[:12]:>14}" for c in ds.classes) + f"{'total':>8}"
    lines = [f"data: {len(ds.paths)} images from {ds.root}, {len(ds.skipped)} skipped (skipped.csv)", header]
    for row in rows:
        if row["fold"] == 0 and row["total"]:
            lines.append(f"{row['role']:10}" + "".join(f"{row[c]:>14}" for c in ds.classes) + f"{row['total']:>8}")
    log.info("\n".join(lines) + "\n(fold 0 shown; every fold in data_summary.csv)")
