"""Offline class balancing (augment.py): a new dataset folder with the originals, added images and
augmented copies, and a manifest.csv (brainmri.manifest) that ties every copy to its source, so train.py
keeps a copy in its source's group. (On-the-fly augmentation of training batches is brainmri.batches.)

A transform is a mapping of these keys, each a number or a [low, high] range drawn per copy:
  shift_x, shift_y  fraction of the image side (0.2 = the study's 30 px at 150 px; +x right, +y down)
  rotation          degrees, counter-clockwise
  zoom              scale factor (1 = unchanged, 1.1 = 10% closer)
  brightness        intensity factor (1 = unchanged)
  flip              none | horizontal | vertical
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from tqdm import tqdm

from .config import read_yaml
from .data import decode, find_images, image_files
from .errors import UserError
from .paths import is_within
from .manifest import read_manifest, write_manifest
from .planes import plane_features, predict_planes, read_planes, write_planes

log = logging.getLogger("brainmri")

NUMERIC_KEYS = ("shift_x", "shift_y", "rotation", "zoom", "brightness")
FLIPS = ("none", "horizontal", "vertical")
STUDY_TRANSFORMS = ({"shift_x": 0.2, "rotation": 45}, {"shift_y": -0.2, "rotation": 225})  # 30 px of 150
MARKER = ".brainmri-augment"  # written first into every output: --force only ever replaces a folder holding it


def check_transforms(transforms, where: str) -> list[dict]:
    """Validate a transform list (from YAML); a wrong key or value names itself and `where`."""
    if not isinstance(transforms, list) or not transforms or not all(isinstance(t, dict) for t in transforms):
        raise UserError(f"{where}: transforms must be a non-empty list of mappings, e.g. [{{rotation: 45}}]")
    for i, t in enumerate(transforms):
        for key, value in t.items():
            if key == "flip":
                if value not in FLIPS:
                    raise UserError(f"{where}: transform {i} key 'flip' takes {', '.join(FLIPS)}, got {value!r}")
            elif key not in NUMERIC_KEYS:
                raise UserError(f"{where}: transform {i} has unknown key '{key}' "
                                f"(known: {', '.join(NUMERIC_KEYS + ('flip',))})")
            elif not (_is_number(value) or (isinstance(value, list) and len(value) == 2
                                            and all(_is_number(v) for v in value) and value[0] <= value[1])):
                raise UserError(f"{where}: transform {i} key '{key}' must be a number or [low, high], got {value!r}")
            elif key in ("zoom", "brightness") and min(np.atleast_1d(value)) <= 0:
                raise UserError(f"{where}: transform {i} key '{key}' must be positive, got {value!r}")
            elif key.startswith("shift") and max(np.abs(np.atleast_1d(value))) >= 1:
                raise UserError(f"{where}: transform {i} key '{key}' is a share of the image side, in (-1, 1): "
                                f"a shift of a whole side or more leaves a black copy; got {value!r}")
    return transforms


def load_transforms(path: str | None) -> list[dict]:
    """The transforms of a YAML file's `transforms:` list (checked), or the study's two without a file."""
    if not path:
        return [dict(t) for t in STUDY_TRANSFORMS]
    if not path.endswith((".yaml", ".yml")):
        raise UserError(f"--transforms takes a .yaml file, got {path}")
    return check_transforms(read_yaml(path).get("transforms"), path)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)  # NaN made black copies


def is_random(transform: dict) -> bool:
    return any(isinstance(v, list) for v in transform.values())


def draw(transform: dict, rng: np.random.Generator) -> dict:
    """A concrete transform: every [low, high] range replaced by a value drawn from it."""
    out = {}
    for key, value in sorted(transform.items()):
        out[key] = round(float(rng.uniform(*value)), 4) if isinstance(value, list) else value
    return out


def apply_transform(image: np.ndarray, t: dict) -> np.ndarray:
    """Flip, then rotate and zoom about the centre and shift (black fill, like the MRI background), then scale
    the intensity."""
    h, w = image.shape[:2]
    flip = t.get("flip", "none")
    if flip != "none":
        image = cv2.flip(image, 1 if flip == "horizontal" else 0)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(t.get("rotation", 0)), float(t.get("zoom", 1)))
    m[0, 2] += float(t.get("shift_x", 0)) * w
    m[1, 2] += float(t.get("shift_y", 0)) * h
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if t.get("brightness", 1) != 1:
        out = np.clip(out.astype(np.float32) * float(t["brightness"]), 0, 255).astype(np.uint8)
    return out


def plan_copies(n_sources: int, transforms: list[dict], n_copies: int, seed: int) -> list[tuple[int, int, dict]]:
    """(source index, transform index, concrete transform) for each copy: every source gets the first
    transform before any gets the second, in a seeded order, so the copies spread over all sources."""
    capacity = n_sources * len(transforms)
    if n_copies > capacity and not any(is_random(t) for t in transforms):
        raise UserError(f"{n_copies} copies needed but {n_sources} sources x {len(transforms)} fixed transforms "
                        f"give only {capacity} different ones: add transforms, or give ranges such as rotation: [-20, 20]")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_sources)
    plan = []
    for k in range(n_copies):
        t_idx = (k // n_sources) % len(transforms)
        plan.append((int(order[k % n_sources]), t_idx, draw(transforms[t_idx], rng)))
    return plan


@dataclass
class BalanceResult:
    out: Path
    before: dict[str, int]
    after: dict[str, int]
    added: int
    augmented: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def list_images(folder: Path, skipped: list) -> list[Path]:
    """Image files under `folder` (data.image_files); what is not an image is logged and added to `skipped`."""
    if not folder.is_dir():
        raise UserError(f"folder not found: {folder}")
    files, others = image_files(folder)
    for p, why in others:
        log.warning("skipped %s: %s", p, why)
        skipped.append((str(p), why))
    if not files:
        raise UserError(f"no images in {folder}")
    return files


def _readable(path: Path, skipped: list) -> np.ndarray | None:
    try:
        return decode(path)
    except (ValueError, cv2.error) as err:
        log.warning("skipped %s: %s", path, err)
        skipped.append((str(path), str(err)))
        return None


def balance(data: Path, out: Path, cls: str, target: int, transforms: list[dict], seed: int = 0,
            add: Path | None = None, link: bool = False, force: bool = False) -> BalanceResult:
    """Write `out`: a copy of `data` whose class `cls` is brought to `target` images by the images of `add`
    and augmented copies of the class's training images. `data` is only read."""
    data, out = Path(data), Path(out)
    items, classes = find_images(data)
    if cls not in classes:
        raise UserError(f"class '{cls}' not found in {data} (classes: {', '.join(classes)})")
    check_output(out, [data] + ([Path(add)] if add else []), force)
    skipped: list[tuple[str, str]] = []
    train_subset = "Training" if any(s == "Training" for _, _, s in items) else ""
    earlier = read_manifest(data)  # an augment.py output balanced again: its copies stay copies
    usable, sources = _read_images(data, items, skipped, lambda rel, label, subset: label == cls and subset ==
                                   train_subset and earlier.get(rel, {}).get("kind") != "augmented")
    before = {c: sum(1 for rel, label, _ in items if label == c and rel in usable) for c in classes}
    added = [(p, img) for p in (list_images(add, skipped) if add else []) if (img := _readable(p, skipped)) is not None]
    added_names = _added_names(Path(add) if add else None, [p for p, _ in added], {Path(rel).name for rel, *_ in items})
    have = before[cls] + len(added)
    if target < have:
        raise UserError(f"target {target} is lower than the {have} images class '{cls}' already has"
                        + (" with the added ones" if added else ""))
    dest = Path(train_subset) / cls
    sources += [((dest / name).as_posix(), img) for name, img in zip(added_names, (img for _, img in added))]
    if not sources and target > have:
        raise UserError(f"class '{cls}' has no readable training image to augment")
    plan = plan_copies(len(sources), transforms, target - have, seed)
    tmp = _fresh_partial(out, data)  # renamed at the end: a crash leaves no half dataset as `out`
    originals, lost = _copy_originals(data, tmp, items, link, earlier, skipped)
    rows = (originals + _copy_added(tmp, dest, cls, added, added_names, link)
            + _write_copies(tmp, dest, cls, sources, plan, {rel for rel, *_ in items}))
    write_manifest(tmp / "manifest.csv", rows)
    _carry_planes(data, tmp, rows)
    after = {c: before[c] - sum(1 for rel, label, _ in items if label == c and rel in usable & lost)
             + (len(added) + len(plan) if c == cls else 0) for c in classes}
    summary = {"input": str(data), "class": cls, "target": target, "seed": seed, "transforms": transforms,
               "before": before, "after": after, "added": len(added), "augmented": len(plan),
               "skipped": [list(s) for s in skipped]}
    (tmp / "augment_summary.json").write_text(json.dumps(summary, indent=2))
    contact_sheet(tmp, rows, tmp / "contact_sheet.png")
    _replace(out, tmp)
    return BalanceResult(out, before, after, len(added), len(plan), skipped)


def usable_images(data: Path, cls: str) -> int:
    """How many images of class `cls` training can use (what balance() counts towards its target)."""
    items, _ = find_images(data)
    usable, _ = _read_images(data, [item for item in items if item[1] == cls], [], lambda *_: False)
    return len(usable)


def _replace(out: Path, tmp: Path) -> None:
    """Put the finished output in place of an earlier one, checked again for files the user added while this
    run went on (the check at the start is minutes old): those make it refuse, and keep the earlier output."""
    try:
        _refuse_files_not_ours(out, "added while augment.py ran", "it was left as it is; move them out and run again")
    except UserError:
        shutil.rmtree(tmp)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _read_images(data: Path, items: list, skipped: list, wanted) -> tuple[set[str], list[tuple[str, np.ndarray]]]:
    """Which images training can use (data.decode's rules; the others are added to `skipped`), and the decoded
    images wanted(rel, label, subset) picks (the sources of copies: a class's training images, never a Testing
    image nor a copy an earlier augment.py run made), as (path, image)."""
    usable, kept = set(), []
    for rel, label, subset in tqdm(items, desc="read images", unit="img", disable=None):
        img = _readable(data / rel, skipped)
        if img is not None:
            usable.add(rel)
            if wanted(rel, label, subset):
                kept.append((rel, img))
    return usable, kept


def _fresh_partial(out: Path, data: Path) -> Path:
    """An empty out.partial holding our marker first."""
    tmp = _partial(out)
    if tmp.exists():
        shutil.rmtree(tmp)  # an earlier crash's leftover: check_output saw our marker in it
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text(json.dumps({"written_by": "augment.py", "input": str(data)}) + "\n")
    return tmp


def _copy_originals(data: Path, tmp: Path, items: list, link: bool, earlier: dict,
                    skipped: list) -> tuple[list[dict], set[str]]:
    """The input's images, copied, and the set of those that could not be (logged and added to `skipped`);
    each keeps the row an earlier augment.py run gave it (`earlier`, the input's manifest): its copies stay
    copies of their sources, trained on only where those are."""
    rows, lost = [], set()
    for rel, label, _ in tqdm(items, desc="copy originals", unit="img", disable=None):
        try:
            _copy(data / rel, tmp / rel, link)
        except OSError as err:
            log.warning("skipped %s: not copied (%s)", data / rel, err.strerror or err)
            skipped.append((str(data / rel), f"not copied ({err.strerror or err})"))
            lost.add(rel)
            continue
        rows.append(dict(earlier.get(rel) or {"path": rel, "class": label, "kind": "original", "source": "",
                                              "transform": ""}))
    return rows, lost


def _copy_added(tmp: Path, dest: Path, cls: str, added: list, names: list[str], link: bool) -> list[dict]:
    rows = []
    for (p, _), name in zip(added, names):
        rel = (dest / name).as_posix()
        _copy(p, tmp / rel, link)
        rows.append({"path": rel, "class": cls, "kind": "added", "source": str(p), "transform": ""})
    return rows


def _write_copies(tmp: Path, dest: Path, cls: str, sources: list, plan: list, taken: set[str]) -> list[dict]:
    """The augmented copies of the plan, as PNG files named after their number, transform and source; a
    number whose name is `taken` (an earlier run's copy, when augment.py balances its own output again) is
    skipped, so no file is written over."""
    rows, used, number = [], {p.lower() for p in taken}, 0
    for s_idx, t_idx, t in tqdm(plan, desc=f"augment {cls}", unit="img", disable=None):
        src_rel, img = sources[s_idx]
        while (rel := (dest / f"aug{number:05d}_t{t_idx}_{Path(src_rel).stem}.png").as_posix()).lower() in used:
            number += 1
        used.add(rel.lower())
        number += 1
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / rel), cv2.cvtColor(apply_transform(img, t), cv2.COLOR_RGB2BGR))
        rows.append({"path": rel, "class": cls, "kind": "augmented", "source": src_rel,
                     "transform": json.dumps(t, sort_keys=True)})
    return rows


def format_counts(result: BalanceResult) -> str:
    """The per-class table of images before and after, for the log."""
    width = max(len(c) for c in result.before)
    lines = [f"{'class':{width}}  before  after"]
    lines += [f"{c:{width}}  {result.before[c]:6d}  {result.after[c]:5d}" for c in result.before]
    lines.append(f"{'total':{width}}  {sum(result.before.values()):6d}  {sum(result.after.values()):5d}")
    return "\n".join(lines)


def _partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_output(out: Path, inputs: list[Path], force: bool) -> None:
    """Refuse, before anything is written, an output that is, holds or lies inside an input folder (symlinks
    resolved), and any replacement of a folder that augment.py did not write."""
    for folder in inputs:
        if is_within(out, folder):
            raise UserError(f"output folder {out} must be outside the input folder {folder}")
        if is_within(folder, out):
            raise UserError(f"output folder {out} contains the input folder {folder}: choose a folder outside it")
    if out.is_symlink():
        raise UserError(f"output folder {out} is a symbolic link: give the real folder, or a new one")
    if out.exists() and not force:
        raise UserError(f"output folder {out} exists: choose another, or pass --force to replace it")
    for folder in (out, _partial(out)):
        if folder.exists() and not written_by_augment(folder):
            raise UserError(f"{folder} was not written by augment.py (no {MARKER} or manifest.csv and "
                            "augment_summary.json in it): --force replaces only an earlier output; choose another --out")
    _refuse_files_not_ours(out, "not written by augment.py", "--force replaces only what augment.py wrote; move "
                           "them out, or choose another --out")


OWN_FILES = {MARKER, "manifest.csv", "augment_summary.json", "contact_sheet.png", "planes.csv"}  # beside the images


def _refuse_files_not_ours(out: Path, what: str, advice: str) -> None:
    """A one-line refusal naming the files of an earlier output that augment.py did not write, if any."""
    foreign = _not_written_by_augment(out) if out.exists() else []
    if foreign:
        raise UserError(f"{out} holds {len(foreign)} file(s) {what} ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}): {advice}")


def _not_written_by_augment(folder: Path) -> list[str]:
    """What an earlier output holds that augment.py did not write, sorted: files that are neither its own nor
    images its manifest lists (a user's notes, a scan added since), folders that hold none of those, links."""
    ours = OWN_FILES | set(read_manifest(folder))
    our_folders = {parent.as_posix() for rel in ours for parent in PurePosixPath(rel).parents}
    foreign = []
    for top, folders, files in os.walk(folder):  # links to folders are listed, not followed
        for name in folders + files:
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            mine = rel in our_folders if path.is_dir() and not path.is_symlink() else rel in ours and not path.is_symlink()
            if not mine:
                foreign.append(rel)
    return sorted(foreign)


def written_by_augment(folder: Path) -> bool:
    """Whether `folder` is an augment.py output (its marker, or an older output's manifest and summary)."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    return (folder / MARKER).is_file() or ((folder / "manifest.csv").is_file()
                                           and (folder / "augment_summary.json").is_file())


def _added_names(folder: Path | None, paths: list[Path], taken: set[str]) -> list[str]:
    """A file name in the class folder per added image: "added_" and its path under `folder`, flattened
    (s1/x.jpg: added_s1__x.jpg). Two that would still be one name (spaces made underscores), or a name in
    `taken` (the originals' file names), get _2, _3, ... before the extension: no added image is lost by
    overwriting another."""
    names, used = [], {n.lower() for n in taken}  # lower case: a case-insensitive file system clashes too
    for p in paths:
        rel = p.relative_to(folder) if folder is not None else Path(p.name)
        stem, suffix = "added_" + "__".join(rel.with_suffix("").parts).replace(" ", "_"), rel.suffix
        name, k = stem + suffix, 1
        while name.lower() in used:
            k += 1
            name = f"{stem}_{k}{suffix}"
        used.add(name.lower())
        names.append(name)
    return names


def _copy(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system: fall back to a copy
            pass
    shutil.copyfile(src, dst)


def _carry_planes(data: Path, out: Path, rows: list[dict]) -> None:
    """planes.csv of the input, extended: a copy has its source's plane, an added image an estimated one."""
    if not (data / "planes.csv").is_file():
        return
    known = read_planes(data / "planes.csv")
    for r in (r for r in rows if r["kind"] == "added"):
        try:
            known[r["path"]] = predict_planes(plane_features(decode(out / r["path"]))[None])[0][0]
        except ValueError as err:  # a blank picture: its plane stays unknown (not in planes.csv)
            log.warning("no plane estimated for %s: %s", out / r["path"], err)
    planes = [(r["path"], known.get(r["source"] if r["kind"] == "augmented" else r["path"], "")) for r in rows]
    write_planes(out / "planes.csv", [(p, pl) for p, pl in planes if pl])


def contact_sheet(root: Path, rows: list[dict], path: Path, n: int = 16, side: int = 128) -> Path | None:
    """Up to n augmented images, each right of its source, 4 pairs a row, with the transform written under."""
    copies = [r for r in rows if r["kind"] == "augmented"]
    if not copies:
        return None
    pick = [copies[int(i)] for i in np.linspace(0, len(copies) - 1, min(n, len(copies))).round()]
    tiles = []
    for r in pick:
        src = cv2.resize(cv2.imread(str(root / r["source"])), (side, side), interpolation=cv2.INTER_AREA)
        aug = cv2.resize(cv2.imread(str(root / r["path"])), (side, side), interpolation=cv2.INTER_AREA)
        text = ", ".join(f"{k} {v}" for k, v in json.loads(r["transform"]).items())
        caption = np.zeros((18, 2 * side, 3), np.uint8)
        cv2.putText(caption, text[:40], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
        pair = np.vstack([np.hstack([src, aug]), caption])
        tiles.append(cv2.copyMakeBorder(pair, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(90, 90, 90)))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles), 4)])
    cv2.imwrite(str(path), sheet)
    return path
