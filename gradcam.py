"""Grad-CAM / Grad-CAM++ maps of a trained model, batched, with localization and faithfulness scores.

    python gradcam.py outputs/<exp>/<run>                      # the run's test images (fold 0's model)
    python gradcam.py RUN path/to/slices/ img.jpg --class glioma_tumor
    python gradcam.py RUN --misclassified                      # the list from the latest evaluate.py
    python gradcam.py RUN --score                              # synthetic data: pointing game vs baselines, energy
    python gradcam.py RUN --deletion                           # faithfulness: deletion curve vs a random map
    python gradcam.py fold0/best.keras images/ --method gradcam++ --layer top_activation

Writes <run>/gradcam/ (gradcam-2/, ... if that exists): one panel per image, grid.png, scores.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri.errors import UserError, cli_entry  # noqa: E402

log = logging.getLogger("brainmri")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder or a .keras model")
    p.add_argument("images", nargs="*", help="image files or folders (default: the run's test images)")
    p.add_argument("--fold", type=int, default=0, help="which fold's model of a run (default 0)")
    p.add_argument("--misclassified", action="store_true", help="the images evaluate.py listed as misclassified")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++"])
    p.add_argument("--layer", help="feature-map layer (default: the last one; 'nested/name' inside a backbone)")
    p.add_argument("--class", dest="class_name", help="explain this class (default: the predicted one)")
    p.add_argument("--score", action="store_true", help="score maps against the synthetic lesion masks")
    p.add_argument("--deletion", action="store_true", help="deletion-curve faithfulness against a random map")
    p.add_argument("--limit", type=int, default=64, help="at most this many images (default 64; 0 = all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threshold", type=float, help="tumor-vs-no-tumor models: call 'tumor' at P(tumor) >= this and "
                                                    "map that call (binary_task.py passes the one chosen on validation)")
    return p.parse_args(argv)


def open_model(target: Path, fold: int):
    """(model, classes, run folder or None, config or None)."""
    from brainmri.config import load_config
    from brainmri.models import load_model
    from brainmri.runs import classes_of_model

    if target.suffix == ".keras":
        if not target.is_file():
            raise UserError(f"model file not found: {target}")
        classes, run = classes_of_model(target)
        return load_model(target, compile=False), classes, run, load_config(run / "config.yaml") if run else None
    model_path = target / f"fold{fold}" / "best.keras"
    if not (target / "config.yaml").is_file() or not model_path.is_file():
        raise UserError(f"{target} is not a run folder with a trained fold {fold} ({model_path} missing)")
    return (load_model(model_path, compile=False), json.loads((target / "classes.json").read_text()), target,
            load_config(target / "config.yaml"))


def select_images(args, run, cfg, classes, size):
    """(paths for captions, images uint8 at model size, true labels or -1, source root or None)."""
    import numpy as np

    from brainmri.data import IMAGE_EXTENSIONS, load_resized
    from brainmri.pipeline import data_root

    root = data_root(cfg) if cfg else None
    rows = []  # (display path, absolute path, true label index or -1)
    if args.misclassified:
        if run is None:
            raise UserError("--misclassified needs a run folder (evaluate.py writes the list there)")
        lists = sorted(run.glob("evaluation*/test/misclassified.csv"), key=lambda p: p.stat().st_mtime)
        if not lists:
            raise UserError(f"no misclassified.csv under {run}: run python evaluate.py {run} first")
        with open(lists[-1], newline="") as f:
            rows = [(r["path"], root / r["path"], classes.index(r["true"])) for r in csv.DictReader(f)]
    elif args.images:
        for item in map(Path, args.images):
            if item.is_dir():
                rows += [(str(p), p, -1) for p in sorted(item.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
            elif item.is_file():
                rows.append((str(item), item, -1))
            else:
                raise UserError(f"image or folder not found: {item}")
    elif run is not None:
        from brainmri.splits import read_splits

        s = read_splits(run / "splits.csv")
        rows = [(p, root / p, classes.index(lab)) for p, lab, r in zip(s["paths"], s["labels"], s["roles"][:, 0])
                if r == "test"]
        rows = _round_robin_by_class(rows)  # a limited sample shows every class, not the first one only
    if args.limit:
        rows = rows[: args.limit]
    images, kept = [], []
    for row in rows:
        try:
            images.append(load_resized(row[1], size)[0])
            kept.append(row)
        except (ValueError, OSError) as err:
            log.warning("skipped %s: %s", row[1], err)
    if not kept:
        raise UserError("no images to explain: the list is empty or no file could be read")
    return [r[0] for r in kept], np.stack(images), np.array([r[2] for r in kept]), root


def _round_robin_by_class(rows):
    by_class = {}
    for row in rows:
        by_class.setdefault(row[2], []).append(row)
    queues = list(by_class.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from tqdm import tqdm

    from brainmri import cam, plots, runs

    runs.setup_logging()
    model, classes, run, cfg = open_model(Path(args.target), args.fold)
    if args.threshold is not None and model.output_shape[-1] != 1:
        raise UserError("--threshold is for a model with one sigmoid output (binary_task.py)")
    if args.class_name and args.class_name not in classes:
        raise UserError(f"--class {args.class_name}: not one of {', '.join(classes)}")
    if args.score and not (cfg and cfg.synthetic):  # checked before any work, so no half-finished folder
        raise UserError("--score needs lesion masks: use a run trained on the synthetic data (configs/demo.yaml)")
    cm = cam.split_model(model, args.layer)
    fn = cam.make_cam_fn(cm, args.method)
    size = model.input_shape[1]
    paths, images, truth, root = select_images(args, run, cfg, classes, size)
    wanted = np.full(len(images), classes.index(args.class_name)) if args.class_name else None
    out = runs.new_folder((run or Path(args.target).parent) / "gradcam")
    log.info("%s at layer %s on %d images -> %s", args.method, cm.layer, len(images), out)
    maps, probs = cam.compute_maps(fn, images, wanted, args.batch_size, progress=True)
    pred = probs.argmax(1) if args.threshold is None else (probs[:, 1] >= args.threshold).astype(int)
    if wanted is None and args.threshold is not None:  # those maps explain the call at 0.5: explain the one captioned
        maps = cam.compute_maps(fn, images, pred, args.batch_size)[0]
    heats = cam.upsample(maps, size)
    scores = {"method": args.method, "layer": cm.layer, "images": len(images)}
    if args.misclassified:  # also the map of the true class, beside the predicted one
        true_heats = cam.upsample(cam.compute_maps(fn, images, truth, args.batch_size)[0], size)
    for i, path in enumerate(tqdm(paths, desc="panels", unit="img", disable=None)):
        shown = pred[i] if wanted is None else wanted[i]
        panels, titles = [heats[i]], [f"{classes[shown]} (p {probs[i, shown]:.2f})"]
        if args.misclassified:
            panels, titles = [true_heats[i], heats[i]], [f"true {classes[truth[i]]}", f"predicted {classes[pred[i]]}"]
        plots.cam_panel(images[i], panels, titles, out / "images" / f"{i:04d}_{Path(path).stem}")
    grid = [plots.overlay(im, h) for im, h in zip(images[:36], heats[:36])]
    captions = [f"{'true ' + plots.short(classes[t]) + chr(10) if t >= 0 else ''}pred {plots.short(classes[p])} {pr[p]:.2f}"
                for t, p, pr in zip(truth[:36], pred[:36], probs[:36])]
    plots.image_gallery(grid, captions, out / "grid", f"{args.method} ({cm.layer})")
    if args.score:
        cell = size / maps.shape[1]  # the map's own resolution limits where its peak can be
        scores["localization"] = localization(images, heats, truth, pred, paths, classes, root, cfg, cell,
                                              _groups_of(run, paths))
    if args.deletion:
        scores["deletion"] = faithfulness(model, images, heats, pred, maps.shape, out)
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    log.info("scores: %s", json.dumps(scores))
    return 0


def localization(images, heats, truth, pred, paths, classes, root, cfg, cell: float, groups=None) -> dict:
    """Pointing game (beside a class location prior and the image centre, with 95% bootstrap intervals) and
    energy share on correctly classified tumor images of the synthetic set; `groups`: near-duplicate ids."""
    import numpy as np

    from brainmri import cam
    from brainmri.data import decode
    from brainmri.synthetic import mask_path

    size = images.shape[1]
    import cv2

    keep = [i for i in range(len(paths)) if truth[i] == pred[i] and classes[truth[i]] != "no_tumor"]
    if not keep:
        raise UserError("--score found no correctly classified tumor image among the images")
    masks = np.stack([cv2.resize(decode(mask_path(root, root / paths[i]))[..., 0], (size, size),
                                 interpolation=cv2.INTER_NEAREST) for i in keep])
    tolerance = max(1, int(np.ceil(cell / 2)))  # half a feature-map cell: finer than the map can point
    labels = np.array([classes[truth[i]] for i in keep])
    groups = None if groups is None else np.asarray(groups)[keep]
    hits = cam.pointing_with_baselines(heats[keep], masks, labels, tolerance, groups)
    hit, share = hits["maps"], cam.energy_share(heats[keep], masks)
    per_class = {c: {"images": int((labels == c).sum()), "pointing_game": float(hit[labels == c].mean()),
                     "location_prior": float(hits["location_prior"][labels == c].mean()),
                     "centre": float(hits["centre"][labels == c].mean()),
                     "energy_share": float(share[labels == c].mean())} for c in sorted(set(labels))}
    out = {"images": len(keep), "tolerance_px": tolerance, "tolerance_fraction": tolerance / size,
           **_pointing_score(hit, groups), "energy_share": float(share.mean()),
           "lesion_area_share": float((masks > 0).mean()),
           "baselines": {"location_prior": {**_pointing_score(hits["location_prior"], groups),
                                            "how": "per class, the mean lesion mask of the other groups' images"},
                         "centre": {**_pointing_score(hits["centre"], groups), "how": "the image centre as the point"}},
           "bootstrap": {"resampled": "images" if groups is None else "groups", "level": 0.95, "resamples": 2000,
                         "units": len(keep) if groups is None else len(set(groups.tolist()))},
           "per_class": per_class}
    log.info(_pointing_line(out))
    return out


def _pointing_score(hits, groups) -> dict:
    """The hit rate and its 95% bootstrap interval (null with a single group)."""
    from brainmri.metrics import bootstrap_mean_ci

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


def _groups_of(run, paths):
    """The images' near-duplicate group ids from the run's splits.csv; None unless every image is listed."""
    import numpy as np

    from brainmri.splits import read_splits

    if run is None or not (run / "splits.csv").is_file():
        return None
    s = read_splits(run / "splits.csv")
    by_path = dict(zip(s["paths"], s["groups"].tolist()))
    ids = [by_path.get(p) for p in paths]
    return None if None in ids else np.array(ids)


def faithfulness(model, images, heats, pred, maps_shape, out: Path) -> dict:
    """Deletion-curve area of the maps against random maps (lower is more faithful)."""
    import numpy as np

    from brainmri import cam, plots
    from brainmri.backend import compiled_forward

    forward = compiled_forward(model)
    fr, curve = cam.deletion_scores(forward, images, heats, pred)
    # the baseline: random maps at the map's own resolution, upsampled the same way, so both orders delete
    # compact regions (scattered single pixels would wreck any prediction and flatter the maps)
    random_maps = cam.upsample(np.random.default_rng(0).random(maps_shape).astype(np.float32), heats.shape[1])
    _, random_curve = cam.deletion_scores(forward, images, random_maps, pred)
    cam_area, random_area = cam.area(fr, curve), cam.area(fr, random_curve)
    plots.deletion_curves(fr, {"Grad-CAM order": (curve, cam_area), "random order": (random_curve, random_area)},
                          out / "deletion")
    return {"fractions": fr.tolist(), "cam_curve": curve.tolist(), "random_curve": random_curve.tolist(),
            "cam_area": cam_area, "random_area": random_area}


if __name__ == "__main__":
    sys.exit(main())
