"""Grad-CAM explanations of a trained model (gradcam.py, and binary_task.py for its misclassified images):
which images, their maps, panels and grid, and how good the maps are: the pointing game beside baselines and
the energy share on the synthetic lesion masks (localization), the deletion curve against random maps
(faithfulness). The maps themselves are brainmri.cam."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import cam, plots
from .backend import compiled_forward
from .data import image_files, load_resized
from .errors import UserError
from .metrics import bootstrap_mean_ci
from .pipeline import data_root
from .runs import Trained, write_whole
from .splits import read_splits
from .synthetic import lesion_mask
from .testsets import groups_of, round_robin_by_class, test_rows

log = logging.getLogger("brainmri")
GRID = 36  # images handed to grid.png (plots.cam_grid draws up to its limit and says how many)


@dataclass(frozen=True)
class Request:
    """What to explain, and how (gradcam.py's options)."""

    method: str = "gradcam"  # or gradcam++
    layer: str | None = None  # the feature-map layer ('nested/name' inside a backbone); None: the last one
    class_name: str | None = None  # explain this class; None: the predicted one
    threshold: float | None = None  # one-sigmoid models: call 'tumor' at P(tumor) >= this, and map that call
    misclassified: bool = False  # evaluate.py's misclassified list, the true class's map beside the predicted
    score: bool = False  # localization against the synthetic lesion masks
    deletion: bool = False  # faithfulness: the deletion curve against random maps
    limit: int = 64  # at most this many images (0: all)


@dataclass
class Selection:
    """The images to explain."""

    paths: list[str]  # for captions and file names: relative to the run's data folder, or as given
    images: np.ndarray  # uint8 at the model's input size
    truth: np.ndarray  # true class index, -1 where unknown
    root: Path | None  # the run's data folder (lesion masks lie beside its images)


def gradcam(trained: Trained, model, req: Request, items: list[str]) -> tuple[Path, dict]:
    """Check the request, choose the images (`items`: files or folders; none: the run's test images), and
    write their maps into a new <trained.folder>/gradcam/ (written whole: runs.write_whole): one panel per
    image, grid.png and scores.json."""
    check(req, model, trained)
    cm = cam.split_model(model, req.layer)
    sel = select_images(req, items, trained, model.input_shape[1])
    log.info("%s at layer %s on %d images", req.method, cm.layer, len(sel.images))

    def write(folder: Path) -> dict:
        scores = explain(model, cm, sel, req, trained, folder)
        (folder / "scores.json").write_text(json.dumps(scores, indent=2))
        return scores

    out, scores = write_whole(trained.folder / "gradcam", write)
    log.info("scores: %s -> %s", json.dumps(scores), out)
    return out, scores


def check(req: Request, model, trained: Trained) -> None:
    """The request's errors, before any work (so no half-finished output folder)."""
    if req.threshold is not None and model.output_shape[-1] != 1:
        raise UserError("--threshold is for a model with one sigmoid output (binary_task.py)")
    if req.class_name and req.class_name not in trained.classes:
        raise UserError(f"--class {req.class_name}: not one of {', '.join(trained.classes)}")
    if req.score and not (trained.run and trained.cfg.synthetic):
        raise UserError("--score needs lesion masks: use a run trained on the synthetic data (configs/demo.yaml)")


def select_images(req: Request, items: list[str], trained: Trained, size: int) -> Selection:
    """The misclassified list, the given files and folders, or the run's test images (class by class)."""
    run, classes = trained.run, trained.classes
    root = data_root(trained.cfg) if run is not None else None
    rows = []  # (display path, absolute path, true label index or -1)
    if req.misclassified:
        rows = _misclassified_rows(run, root, classes)
    elif items:
        rows = _file_rows(items)
    elif run is not None:
        s = read_splits(run / "splits.csv")
        rows = round_robin_by_class([(s["paths"][i], root / s["paths"][i], classes.index(s["labels"][i]))
                                     for i in test_rows(s)])
    rows = rows[: req.limit] if req.limit else rows
    images, kept = [], []
    for row in rows:
        try:
            images.append(load_resized(row[1], size)[0])
            kept.append(row)
        except (ValueError, OSError) as err:
            log.warning("skipped %s: %s", row[1], err)
    if not kept:
        raise UserError("no images to explain: the list is empty or no file could be read")
    return Selection([r[0] for r in kept], np.stack(images), np.array([r[2] for r in kept]), root)


def _misclassified_rows(run: Path | None, root: Path, classes) -> list[tuple]:
    """The latest evaluation's misclassified test images."""
    if run is None:
        raise UserError("--misclassified needs a run folder (evaluate.py writes the list there)")
    lists = sorted(run.glob("evaluation*/test/misclassified.csv"), key=lambda p: p.stat().st_mtime)
    if not lists:
        raise UserError(f"no misclassified.csv under {run}: run python evaluate.py {run} first")
    with open(lists[-1], newline="") as f:
        return [(r["path"], root / r["path"], classes.index(r["true"])) for r in csv.DictReader(f)]


def _file_rows(items: list[str]) -> list[tuple]:
    """Image files, and the images under folders, with no known label."""
    rows = []
    for item in map(Path, items):
        if item.is_dir():
            images, others = image_files(item)
            rows += [(str(p), p, -1) for p in images]
            for p, why in others:
                log.warning("skipped %s: %s", p, why)
        elif item.is_file():
            rows.append((str(item), item, -1))
        else:
            raise UserError(f"image or folder not found: {item}")
    return rows


def explain(model, cm: cam.CamModel, sel: Selection, req: Request, trained: Trained, out: Path) -> dict:
    """Maps, panels and grid of the selection in `out`, and the scores asked for."""
    fn = cam.make_cam_fn(cm, req.method)
    classes, size, batch = trained.classes, sel.images.shape[1], trained.cfg.batch_size
    wanted = np.full(len(sel.images), classes.index(req.class_name)) if req.class_name else None
    maps, probs = cam.compute_maps(fn, sel.images, wanted, batch, progress=True)
    pred = probs.argmax(1) if req.threshold is None else (probs[:, 1] >= req.threshold).astype(int)
    if wanted is None and req.threshold is not None:  # those maps explain the call at 0.5: explain the one captioned
        maps = cam.compute_maps(fn, sel.images, pred, batch)[0]
    heats = cam.upsample(maps, size)
    true_heats = cam.upsample(cam.compute_maps(fn, sel.images, sel.truth, batch)[0], size) \
        if req.misclassified else None  # the true class's map, beside the predicted one's
    subtitle = f"{req.method.replace('gradcam', 'Grad-CAM')}, layer {cm.layer} ({maps.shape[1]}x{maps.shape[2]} map)"
    masks = [lesion_mask(sel.root, p, size) for p in sel.paths]
    _panels(sel, heats, true_heats, probs, pred, wanted, classes, masks, subtitle, out, trained.cfg.figure_formats)
    captions = [f"{'true ' + plots.short(classes[t]) + chr(10) if t >= 0 else ''}pred {plots.short(classes[p])} "
                f"{pr[p]:.2f}" for t, p, pr in zip(sel.truth[:GRID], pred[:GRID], probs[:GRID])]
    what = plots.short(req.class_name) if req.class_name else "the class it predicted"
    plots.cam_grid(sel.images[:GRID], heats[:GRID], captions, out / "grid", f"Where the model looked for {what}",
                   subtitle, masks=masks[:GRID], flagged=[t >= 0 and t != p for t, p in zip(sel.truth[:GRID], pred)],
                   total=len(sel.images), formats=trained.cfg.figure_formats)
    scores = {"method": req.method, "layer": cm.layer, "images": len(sel.images)}
    if req.score:
        cell = size / maps.shape[1]  # the map's own resolution limits where its peak can be
        scores["localization"] = localization(sel, heats, pred, classes, cell, groups_of(trained.run, sel.paths))
    if req.deletion:
        scores["deletion"] = faithfulness(model, sel.images, heats, pred, maps.shape, out, trained.cfg.figure_formats)
    return scores


def _panels(sel: Selection, heats, true_heats, probs, pred, wanted, classes, masks, subtitle: str, out: Path,
            formats) -> None:
    """One panel per image: its map (with --misclassified, the true class's map beside the predicted one's),
    titled in words, the lesion outlined where the data has masks."""
    for i, path in enumerate(tqdm(sel.paths, desc="panels", unit="img", disable=None)):
        shown = pred[i] if wanted is None else wanted[i]
        panels, titles = [heats[i]], [f"{plots.short(classes[shown])} (p {probs[i, shown]:.2f})"]
        what = plots.short(classes[shown])
        if true_heats is not None:
            panels, what = [true_heats[i], heats[i]], "the true and the predicted class"
            titles = [f"true: {plots.short(classes[sel.truth[i]])}", f"predicted: {titles[0]}"]
        plots.cam_panel(sel.images[i], panels, titles, out / "images" / f"{i:04d}_{Path(path).stem}",
                        formats=formats, title=f"Where the model looked for {what}", subtitle=subtitle,
                        mask=masks[i])


def localization(sel: Selection, heats, pred, classes, cell: float, groups=None) -> dict:
    """Pointing game (beside a class location prior and the image centre, with 95% bootstrap intervals) and
    energy share on correctly classified tumor images of the synthetic set; `groups`: near-duplicate ids."""
    truth, size = sel.truth, sel.images.shape[1]
    keep = [i for i in range(len(sel.paths)) if truth[i] == pred[i] and classes[truth[i]] != "no_tumor"]
    if not keep:
        raise UserError("--score found no correctly classified tumor image among the images")
    masks = np.stack([lesion_mask(sel.root, sel.paths[i], size) for i in keep])
    tolerance = max(1, int(np.ceil(cell / 2)))  # half a feature-map cell: finer than the map can point
    labels = np.array([classes[truth[i]] for i in keep])
    groups = None if groups is None else np.asarray(groups)[keep]
    hits = cam.pointing_with_baselines(heats[keep], masks, labels, tolerance, groups)
    share = cam.energy_share(heats[keep], masks)
    out = {"images": len(keep), "tolerance_px": tolerance, "tolerance_fraction": tolerance / size,
           **_pointing_score(hits["maps"], groups), "energy_share": float(share.mean()),
           "lesion_area_share": float((masks > 0).mean()),
           "baselines": {"location_prior": {**_pointing_score(hits["location_prior"], groups),
                                            "how": "per class, the mean lesion mask of the other groups' images"},
                         "centre": {**_pointing_score(hits["centre"], groups), "how": "the image centre as the point"}},
           "bootstrap": {"resampled": "images" if groups is None else "groups", "level": 0.95, "resamples": 2000,
                         "units": len(keep) if groups is None else len(set(groups.tolist()))},
           "per_class": _per_class(labels, hits, share)}
    log.info(_pointing_line(out))
    return out


def _per_class(labels: np.ndarray, hits: dict, share: np.ndarray) -> dict:
    """The pointing game, its baselines and the energy share per tumor class."""
    return {c: {"images": int((labels == c).sum()), "pointing_game": float(hits["maps"][labels == c].mean()),
                "location_prior": float(hits["location_prior"][labels == c].mean()),
                "centre": float(hits["centre"][labels == c].mean()),
                "energy_share": float(share[labels == c].mean())} for c in sorted(set(labels))}


def _pointing_score(hits, groups) -> dict:
    """The hit rate and its 95% bootstrap interval (null with a single group)."""
    return {"pointing_game": float(hits.mean()), "pointing_game_ci95": bootstrap_mean_ci(hits, groups)}


def _pointing_line(loc: dict) -> str:
    """One line: the maps' pointing game beside its baselines, the intervals and the tolerance."""
    def fmt(s):
        ci = s["pointing_game_ci95"]
        return f"{s['pointing_game']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    b = loc["baselines"]
    return (f"pointing game {fmt(loc)} vs location prior {fmt(b['location_prior'])} and centre {fmt(b['centre'])} "
            f"(95% bootstrap over {loc['bootstrap']['units']} {loc['bootstrap']['resampled']}; {loc['images']} "
            f"images; tolerance {loc['tolerance_px']} px = {loc['tolerance_fraction']:.3f} of the image side)")


def faithfulness(model, images, heats, pred, maps_shape, out: Path, formats=("png",)) -> dict:
    """Deletion-curve area of the maps against random maps (lower is more faithful)."""
    forward = compiled_forward(model)
    fr, curve = cam.deletion_scores(forward, images, heats, pred)
    # the baseline: random maps at the map's own resolution, upsampled the same way, so both orders delete
    # compact regions (scattered single pixels would wreck any prediction and flatter the maps)
    random_maps = cam.upsample(np.random.default_rng(0).random(maps_shape).astype(np.float32), heats.shape[1])
    _, random_curve = cam.deletion_scores(forward, images, random_maps, pred)
    cam_area, random_area = cam.area(fr, curve), cam.area(fr, random_curve)
    plots.deletion_curves(fr, {"Grad-CAM order": (curve, cam_area), "random order": (random_curve, random_area)},
                          out / "deletion", formats)
    return {"fractions": fr.tolist(), "cam_curve": curve.tolist(), "random_curve": random_curve.tolist(),
            "cam_area": cam_area, "random_area": random_area}
