"""Stress test of the near-duplicate detector: copies made at known strengths must join their source's group,
and distinct images must stay apart.

    python tools/near_duplicate_stress.py DATA --sources 300 --distinct 300 [--method robust|phash]
        [--seed S] [--scale F] [--extra] [--checked PAIRS.csv ...] [--to-label NEW.csv] [--json OUT.json]

Sources and distinct images are real images with no loose pHash pair between any two of them (distance <= 12,
and different pixels), chosen without the detector under test. Some are still slices of one scan (a
neighbouring level, which pHash does not see as close), and joining those is right, not wrong: two figures
are reported. *Joined*: the share of distinct images whose group holds another distinct image (an upper
bound). *Wrongly joined*: whose group holds an image of another scan, where pairs labelled by eye as the same
or an adjacent slice (--checked: the pair benchmark and data/near_duplicate_stress_joins.csv, pairs this test
joined, labelled blind to the detector) tie images to one scan and every other image is a scan of its own (so
an unlabelled join counts as wrong). The joined pairs no file labels are listed (`joined_unchecked`): label
them with `near_duplicate_benchmark.py sheets` and add them to the file. *Joined to another patient*: the same,
with the scans of pairs whose `patient` column says one person (two blind looks agreed: slices apart, or
another sequence of one head) taken as one; such a join puts no other patient's image beside a test image.

Each source gets one copy per transform and strength (rescale 60-130%, crop 5-20%, JPEG quality 30-90, shift,
gamma/contrast, a text watermark, stretch; and, beyond the issue's list, a 30% crop, rotation, mirroring, a
black border (re-framing), blur, noise, a thumbnail-sized copy, several transforms at once, quarter turns, a
top-to-bottom flip, sharpening, blocky pixels, a wide black canvas, a mirror with a crop, and chains of two or
three of the issue's transforms at its strengths). Each transform and strength is grouped on its own: the
distinct images plus one copy of each source made that way, so a copy must find its source itself. Reported:
the share of copies grouped with their source, per transform and strength, and the shares of distinct images
(sources and the mixed-in ones) joined and wrongly joined (means over the groupings). --extra runs EXTRA
instead: harder strengths and other transforms (a negative, pseudo-colour, perspective, drawn arrows, three
labels, a white border, a flip with a crop, a mirror with a zoom-in, a turn or text, ...), to show where the
detector stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri import duplicates  # noqa: E402
from brainmri.data import decode, find_images  # noqa: E402
from brainmri.errors import UserError, cli_entry  # noqa: E402
# tools/ is on the path (the script's folder)
from near_duplicate_benchmark import read_rows, refuse_existing, rescaled, write_rows  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
CHECKED = (DATA / "near_duplicate_pairs.csv", DATA / "near_duplicate_stress_joins.csv")  # pairs labelled by eye

STRENGTHS = {  # transform -> the strengths tested (the issue's ranges, ends included)
    "rescale": (0.6, 0.8, 1.3),  # size factor, then JPEG quality 90
    "crop": (0.05, 0.1, 0.2, 0.3),  # share of width and of height cut away, split at random between the sides
    #                                 (0.3: beyond the issue's range)
    "jpeg": (90, 50, 30),  # quality
    "shift": (0.03, 0.06, 0.1),  # share of the side, x and y, black fill, same canvas
    "gamma": (0.6, 1.5, 1.8),  # gamma, with a contrast stretch of 0.8-1.2 and offset of -15..15
    "watermark": (0.5, 0.8, 1.2),  # text scale (relative to a 256 px image), white at 60-100% opacity
    "stretch": (0.8, 1.25, 1.4),  # width factor, height kept (resized to a square by someone, say)
    "rotate": (5, 10, 20),  # degrees about the centre, same canvas, black corners (beyond the issue's list)
    "mirror": (1,),  # flipped left to right (beyond the issue's list)
    # beyond the issue's list too: what else a copy on the web goes through
    "pad": (0.1, 0.3),  # re-framed: a black border, this share of each side in all, split at random
    "blur": (1.0, 2.0),  # Gaussian blur, sigma in px of a 256 px image
    "noise": (8, 20),  # Gaussian noise, sigma in grey levels
    "lowres": (0.35,),  # shrunk to this share of each side (a thumbnail)
    "combined": (1,),  # crop 10%, rescale 60-130%, gamma 1.5 with contrast and offset, then JPEG quality 50
    "quarter_turn": (1, 2),  # turned by 90 or 180 degrees (the picture stored sideways or upside down)
    "flip": (1,),  # flipped top to bottom
    "sharpen": (1.0,),  # unsharp mask of this amount (sigma 2 px of a 256 px image)
    "pixelate": (0.25,),  # shrunk to this share of each side, blown up again with blocky pixels
    "letterbox": (1.5,),  # put on a black canvas this many times as wide as its longer side (a slide, a web page)
    "mirror_crop": (0.1, 0.2),  # flipped left to right, then cropped as "crop" (the usual augmentation pipeline)
    "chain": (2, 3),  # this many different transforms of the issue's list, each at one of its strengths, in random
    #                   order (a copy re-cropped, rescaled and stamped with text, say)
}
ISSUE_LIST = {kind: STRENGTHS[kind] for kind in ("rescale", "crop", "jpeg", "shift", "gamma", "watermark", "stretch")}
ISSUE_LIST["crop"] = (0.05, 0.1, 0.2)  # the issue's range

EXTRA = {  # --extra: further transforms and harder strengths, to find where the detector stops (not goals)
    "rescale": (0.3, 3.0), "crop": (0.25,), "shift": (0.15,), "jpeg": (15, 5), "gamma": (0.4, 2.5),
    "watermark": (1.6,), "stretch": (0.6, 1.7), "rotate": (30, 45), "blur": (3.0,), "sharpen": (3.0,),
    "stretch_height": (0.7, 1.4),  # height factor, width kept
    "contrast": (0.5, 1.6),  # grey levels scaled about mid-grey
    "brightness": (60, -40),  # grey levels added
    "invert": (1,),  # a negative
    "colormap": (1,),  # pseudo-colour (OpenCV's JET)
    "perspective": (0.05, 0.1),  # each corner moved at random by up to this share of the shorter side
    "white_pad": (0.1,),  # a white border, this share of the longer side on each side
    "arrows": (2,),  # this many arrows drawn on the head (an annotated teaching image)
    "circle": (30,),  # a circle of this radius (px of a 256 px image) drawn on the head
    "texts": (0.8,),  # three text watermarks of this size
    "median": (5,),  # median filter, kernel size in px
    "salt_pepper": (0.02,),  # this share of pixels set to black or white
    "webp": (20,),  # WebP quality
    "nearest": (0.5,),  # shrunk to this share of each side without smoothing
    "clahe": (3.0,),  # adaptive histogram equalisation, clip limit
    "zoom_in": (0.2,),  # cropped as "crop", then resized back to the original size
    "crop_text": (0.15,),  # cropped as "crop", then a text watermark of size 0.8
    "pad_crop": (0.1,),  # a black border as "pad" 0.2, then cropped as "crop"
    "turn_rescale": (0.7,),  # turned by 90 degrees, then rescaled as "rescale"
    "rotate_crop": (15,),  # rotated as "rotate", then cropped by 10%
    "flip_crop": (0.1,),  # flipped top to bottom, then cropped as "crop"
    "mirror_zoom_in": (0.2,),  # "zoom_in" of the mirrored image (a random resized crop with a flip)
    "mirror_rotate": (10,),  # mirrored, then rotated as "rotate"
    "mirror_text": (0.8,),  # mirrored, then a text watermark of this size
}


def transform(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of `image` (uint8 RGB) changed by one transform at one strength."""
    h, w = image.shape[:2]
    if kind == "rescale":
        out = cv2.resize(image, (max(16, round(w * strength)), max(16, round(h * strength))),
                         interpolation=cv2.INTER_AREA if strength < 1 else cv2.INTER_CUBIC)
        return jpeg(out, 90)
    if kind == "crop":
        cut_x, cut_y = round(w * strength), round(h * strength)
        left, top = int(rng.integers(0, cut_x + 1)), int(rng.integers(0, cut_y + 1))
        return image[top:h - (cut_y - top), left:w - (cut_x - left)].copy()
    if kind == "stretch":
        return cv2.resize(image, (max(16, round(w * strength)), h), interpolation=cv2.INTER_AREA)
    if kind == "rotate":
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.choice([-1, 1])) * strength, 1.0)
        return cv2.warpAffine(image, turn, (w, h))
    if kind == "mirror":
        return image[:, ::-1].copy()
    if kind == "flip":
        return image[::-1].copy()
    if kind == "mirror_crop":
        return transform(image[:, ::-1].copy(), "crop", strength, rng)
    if kind == "chain":
        for name in rng.choice(list(ISSUE_LIST), int(strength), replace=False):
            image = transform(image, str(name), float(rng.choice(ISSUE_LIST[name])), rng)
        return image
    if kind == "quarter_turn":
        return np.ascontiguousarray(np.rot90(image, int(strength)))
    if kind == "sharpen":
        soft = cv2.GaussianBlur(image, (0, 0), 2 * max(h, w) / 256)
        return cv2.addWeighted(image, 1 + strength, soft, -strength, 0)
    if kind == "pixelate":
        small = cv2.resize(image, (max(8, round(w * strength)), max(8, round(h * strength))),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    if kind == "letterbox":
        side = max(h, w)
        canvas = np.zeros((side, round(side * strength)) + image.shape[2:], image.dtype)
        top, left = (side - h) // 2, (canvas.shape[1] - w) // 2
        canvas[top:top + h, left:left + w] = image
        return canvas
    if kind == "jpeg":
        return jpeg(image, int(strength))
    if kind == "pad":
        top, left = (int(rng.integers(0, round(strength * side) + 1)) for side in (h, w))
        bottom, right = round(strength * h) - top, round(strength * w) - left
        return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if kind == "blur":
        return cv2.GaussianBlur(image, (0, 0), strength * max(h, w) / 256)
    if kind == "noise":
        return np.clip(image + rng.normal(0, strength, image.shape), 0, 255).astype(np.uint8)
    if kind == "lowres":
        return cv2.resize(image, (max(16, round(w * strength)), max(16, round(h * strength))),
                          interpolation=cv2.INTER_AREA)
    if kind == "combined":
        out = transform(image, "crop", 0.1, rng)
        out = transform(out, "rescale", float(rng.uniform(0.6, 1.3)), rng)
        return jpeg(transform(out, "gamma", 1.5, rng), 50)
    if kind in EXTRA_KINDS:
        return _extra_transform(image, kind, strength, rng)
    if kind == "shift":
        dx, dy = (rng.choice([-1, 1], 2) * strength * np.array([w, h])).round()
        return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h))
    if kind == "gamma":
        alpha, beta = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
        out = 255.0 * (image / 255.0) ** strength * alpha + beta
        return np.clip(out, 0, 255).astype(np.uint8)
    if kind == "watermark":
        out = image.copy()
        scale = strength * max(h, w) / 256
        text = str(rng.choice(["Radiopaedia", "case 1234", "R", "L  T1 C+", "www.example.org"]))
        org = (int(rng.integers(0, max(1, w // 3))), int(rng.integers(h // 6, h)))
        layer = out.copy()
        cv2.putText(layer, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, round(2 * scale)),
                    cv2.LINE_AA)
        opacity = float(rng.uniform(0.6, 1.0))
        return cv2.addWeighted(layer, opacity, out, 1 - opacity, 0)
    raise ValueError(f"unknown transform {kind}")


def _extra_transform(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The transforms only EXTRA uses (see its comments)."""
    h, w = image.shape[:2]
    scale = max(h, w) / 256
    if kind == "stretch_height":
        return cv2.resize(image, (w, max(16, round(h * strength))), interpolation=cv2.INTER_AREA)
    if kind == "contrast":
        return np.clip((image.astype(np.float32) - 128) * strength + 128, 0, 255).astype(np.uint8)
    if kind == "brightness":
        return np.clip(image.astype(np.int16) + int(strength), 0, 255).astype(np.uint8)
    if kind == "invert":
        return 255 - image
    if kind == "colormap":
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    if kind == "perspective":
        corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        moved = corners + rng.uniform(-1, 1, (4, 2)).astype(np.float32) * strength * min(h, w)
        return cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, moved), (w, h))
    if kind == "white_pad":
        side = round(strength * max(h, w))
        return cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    if kind == "arrows":
        out = image.copy()
        for _ in range(int(strength)):
            tip = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
            tail = tuple(int(t + rng.integers(-60, 60) * scale) for t in tip)
            cv2.arrowedLine(out, tail, tip, (255, 255, 0), max(1, round(2 * scale)), cv2.LINE_AA, tipLength=0.3)
        return out
    if kind == "circle":
        out = image.copy()
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        cv2.circle(out, centre, int(strength * scale), (255, 0, 0), max(1, round(2 * scale)), cv2.LINE_AA)
        return out
    if kind == "texts":
        out = image
        for _ in range(3):
            out = transform(out, "watermark", strength, rng)
        return out
    if kind == "median":
        return cv2.medianBlur(image, int(strength))
    if kind == "salt_pepper":
        out, draw = image.copy(), rng.random((h, w))
        out[draw < strength / 2], out[draw > 1 - strength / 2] = 0, 255
        return out
    if kind == "webp":
        quality = [cv2.IMWRITE_WEBP_QUALITY, int(strength)]
        ok, data = cv2.imencode(".webp", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), quality)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if kind == "nearest":
        return cv2.resize(image, (max(8, round(w * strength)), max(8, round(h * strength))),
                          interpolation=cv2.INTER_NEAREST)
    if kind == "clahe":
        grey = cv2.createCLAHE(strength, (8, 8)).apply(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    if kind == "zoom_in":
        return cv2.resize(transform(image, "crop", strength, rng), (w, h), interpolation=cv2.INTER_CUBIC)
    if kind == "crop_text":
        return transform(transform(image, "crop", strength, rng), "watermark", 0.8, rng)
    if kind == "pad_crop":
        return transform(transform(image, "pad", 0.2, rng), "crop", strength, rng)
    if kind == "turn_rescale":
        return transform(np.ascontiguousarray(np.rot90(image, 1)), "rescale", strength, rng)
    if kind == "rotate_crop":
        return transform(transform(image, "rotate", strength, rng), "crop", 0.1, rng)
    if kind == "flip_crop":
        return transform(image[::-1].copy(), "crop", strength, rng)
    if kind == "mirror_zoom_in":
        return transform(image[:, ::-1].copy(), "zoom_in", strength, rng)
    if kind == "mirror_rotate":
        return transform(image[:, ::-1].copy(), "rotate", strength, rng)
    if kind == "mirror_text":
        return transform(image[:, ::-1].copy(), "watermark", strength, rng)
    raise ValueError(f"unknown transform {kind}")


EXTRA_KINDS = set(EXTRA) - set(STRENGTHS)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def distinct_images(root: Path, count: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    """The relative paths and pixels of `count` real images, no two in one group of a loose grouping (so none
    is a copy of another)."""
    items, _ = find_images(root)
    images = [decode(root / rel) for rel, _, _ in tqdm(items, desc="decode", unit="img", disable=None)]
    ds = SimpleNamespace(canon=duplicates.canonical_slices(images), images=images, copy_views=None,
                         md5=[hashlib.md5(im.tobytes()).hexdigest() for im in images])
    # chosen by the other detector (pHash, loosely), so that the false joins measured are not only those
    # the new detector already agrees are none
    pairs = [duplicates.Detector("phash", hash_distance=12).pairs(ds)[0]]
    neighbours: dict[int, set[int]] = {}
    for i, j in np.concatenate(pairs):
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    md5_seen, picked = set(), []
    for i in np.random.default_rng(seed).permutation(len(images)):  # greedy: no loose pair among the picked
        if not neighbours.get(int(i), set()) & set(picked) and ds.md5[i] not in md5_seen:
            picked.append(int(i))
            md5_seen.add(ds.md5[i])
        if len(picked) == count:
            break
    return [items[i][0] for i in picked], [images[i] for i in picked]


def scans_of(paths: list[str], checked: list[dict]) -> np.ndarray:
    """A scan id per image of `paths`: images that hand-checked pairs (rows with a, b and label, as in the pair
    benchmark) call the same or an adjacent slice share one; every other image is a scan of its own. A scan
    is transitive (a neighbour's neighbour is the same scan), through any labelled image, picked or not."""
    return _tied(paths, [(r["a"], r["b"]) for r in checked if r["label"] in ("same", "adjacent")])


def patients_of(paths: list[str], checked: list[dict]) -> np.ndarray:
    """A patient id per image of `paths`: scans (scans_of) joined further by the pairs whose patient column
    says one person's head ("same": two blind looks agreed; the slices may lie apart, or be another sequence).
    Joining two such images does not leak another patient into a test set."""
    return _tied(paths, [(r["a"], r["b"]) for r in checked
                         if r["label"] in ("same", "adjacent") or r.get("patient") == "same"])


def _tied(paths: list[str], ties: list[tuple[str, str]]) -> np.ndarray:
    """An id per image of `paths`: the connected components of the ties (pairs of paths, any paths)."""
    everyone = list(dict.fromkeys([*paths, *(p for tie in ties for p in tie)]))
    index = {p: k for k, p in enumerate(everyone)}
    tied = np.array([(index[a], index[b]) for a, b in ties], np.int64).reshape(-1, 2)
    return duplicates.groups_from_pairs(len(everyone), tied)[:len(paths)]


def labelled_among(paths: list[str], checked: list[dict]) -> int:
    """How many hand-checked pairs have both images among `paths` (none: the labels cannot tell anything)."""
    picked = set(paths)
    return sum(r["a"] in picked and r["b"] in picked for r in checked)


def joined_with_another(groups: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Per image, whether its group holds an image of another owner (scan, or patient; then every image of
    that group does)."""
    group_owner = np.unique(np.stack([groups, owners], 1), axis=0)
    return np.bincount(group_owner[:, 0], minlength=groups.max(initial=-1) + 1)[groups] > 1


def pairs_across_scans(groups: np.ndarray, scans: np.ndarray) -> set[tuple[int, int]]:
    """(i, j), i < j: images grouped together that are not known to be one scan."""
    found = set()
    for g in np.unique(groups[joined_with_another(groups, scans)]):
        members = np.flatnonzero(groups == g)
        found.update((int(i), int(j)) for n, i in enumerate(members) for j in members[n + 1:]
                     if scans[i] != scans[j])
    return found


def run(images: list[np.ndarray], n_sources: int, detector: duplicates.Detector, seed: int,
        scans: np.ndarray | None = None, strengths: dict = STRENGTHS, patients: np.ndarray | None = None) -> dict:
    """One grouping per transform and strength: the distinct images with one copy of each source made that way.
    A copy must find its source itself: with every transform's copies in one set, a copy the detector misses
    still lands in its source's group through a sibling copy (measured: crop 20% 0.67 that way, 0.41 alone).
    scans: a scan id per image (scans_of; None: every image a scan of its own). strengths: the transforms and
    their strengths (STRENGTHS, or EXTRA). patients: a patient id per image (patients_of; None: every scan a
    patient of its own)."""
    rng = np.random.default_rng(seed)
    scans = np.arange(len(images)) if scans is None else np.asarray(scans)
    patients = scans if patients is None else np.asarray(patients)
    canon, views = duplicates.canonical_slices(images), duplicates.copy_views(images)
    result = {"images_per_grouping": len(images) + n_sources, "sources": n_sources, "distinct": len(images),
              "method": detector.method, "threshold": detector.threshold, "copies_with_source": {},
              "distinct_joined_per_grouping": {}, "distinct_wrongly_joined_per_grouping": {}}
    seconds, with_source_all, joined_all, wrongly_all, other_patient_all, across = 0.0, [], [], [], [], {}
    for kind, tested in strengths.items():
        for strength in tqdm(tested, desc=kind, unit="grouping", disable=None):
            copies = [transform(images[s], kind, strength, rng) for s in range(n_sources)]
            start = time.perf_counter()
            ds = SimpleNamespace(canon=np.concatenate([canon, duplicates.canonical_slices(copies)]),
                                 copy_views=np.concatenate([views, duplicates.copy_views(copies)]),
                                 images=list(images) + copies, md5=[str(i) for i in range(len(images) + n_sources)])
            groups, _, _ = duplicates.group_images(ds, detector)
            seconds += time.perf_counter() - start
            with_source = groups[len(images):] == groups[:n_sources]
            distinct = groups[:len(images)]
            joined = np.bincount(distinct)[distinct] > 1  # its group holds another distinct image
            wrongly = joined_with_another(distinct, scans)  # ... of another scan, as far as labels tell
            for pair in pairs_across_scans(distinct, scans):
                across[pair] = across.get(pair, 0) + 1
            name = f"{kind} {strength}"
            result["copies_with_source"][name] = round(float(with_source.mean()), 4)
            result["distinct_joined_per_grouping"][name] = round(float(joined.mean()), 4)
            result["distinct_wrongly_joined_per_grouping"][name] = round(float(wrongly.mean()), 4)
            with_source_all.append(with_source)
            joined_all.append(joined)
            wrongly_all.append(wrongly)
            other_patient_all.append(joined_with_another(distinct, patients))
    result["copies_with_source_all"] = round(float(np.concatenate(with_source_all).mean()), 4)
    result["copies_with_source_lowest"] = min(result["copies_with_source"].values())
    result["distinct_joined"] = round(float(np.mean([j.mean() for j in joined_all])), 4)
    result["distinct_wrongly_joined"] = round(float(np.mean([w.mean() for w in wrongly_all])), 4)
    result["distinct_wrongly_joined_count"] = int(round(np.mean([w.sum() for w in wrongly_all])))
    result["distinct_joined_to_another_patient"] = round(float(np.mean([w.mean() for w in other_patient_all])), 4)
    result["pairs_joined_across_scans"] = [{"a": int(i), "b": int(j), "groupings": n}
                                           for (i, j), n in sorted(across.items(), key=lambda x: (-x[1], x[0]))]
    result["seconds_per_grouping"] = round(seconds / len(wrongly_all), 2)
    return result


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--sources", type=int, default=300, help="real images that get copies")
    p.add_argument("--distinct", type=int, default=300, help="further real images mixed in, without copies")
    p.add_argument("--method", default="robust", choices=("robust", "phash"))
    p.add_argument("--threshold", type=float, default=duplicates.SAME_OR_ADJACENT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="resize every picked image by this factor first (another "
                   "resolution: the copies are made from the resized images)")
    p.add_argument("--checked", nargs="*", type=Path, default=[c for c in CHECKED if c.is_file()],
                   help="CSV files of pairs labelled by eye (a, b, label): same or adjacent ties two images to one "
                        "scan (default: the pair benchmark and the stress joins of data/)")
    p.add_argument("--to-label", type=Path, help="write the joined pairs no file labels here, in the pair "
                   "benchmark's columns, to draw with near_duplicate_benchmark.py sheets and label")
    p.add_argument("--extra", action="store_true", help="the EXTRA transforms and strengths instead (beyond the "
                   "goals: where the detector stops)")
    p.add_argument("--json", help="write the result here too")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if not 0.1 <= args.scale <= 8:
        raise UserError(f"--scale {args.scale}: give a factor from 0.1 to 8")
    if args.to_label:
        refuse_existing(args.to_label)
    paths, images = distinct_images(Path(args.data), args.sources + args.distinct, args.seed)
    images = [rescaled(image, args.scale) for image in images]
    checked = [row for path in args.checked for row in read_rows(path)]
    among = labelled_among(paths, checked)
    if checked and not among:
        print(f"warning: no hand-checked pair has both images among the {len(paths)} picked (are the paths in "
              f"{', '.join(map(str, args.checked))} relative to {args.data}?): every join counts as wrong",
              file=sys.stderr)
    detector = duplicates.Detector(args.method, args.threshold, 4)
    result = run(images, min(args.sources, len(images)), detector, args.seed, scans_of(paths, checked),
                 EXTRA if args.extra else STRENGTHS, patients=patients_of(paths, checked))
    labelled = {frozenset((r["a"], r["b"])): (r["label"], r.get("patient", "")) for r in checked}
    for pair in result["pairs_joined_across_scans"]:  # paths, and what the files say of each (none: unlabelled)
        pair["a"], pair["b"] = paths[pair["a"]], paths[pair["b"]]
        pair["label"], pair["patient"] = labelled.get(frozenset((pair["a"], pair["b"])), ("", ""))
    result["joined_unchecked"] = sum(not p["label"] for p in result["pairs_joined_across_scans"])
    # pairs of a joined group (joined directly or through others) labelled different that no look checked for
    # one patient: each counts as two patients, so joined_to_another_patient is an upper bound
    result["patient_unchecked"] = sum(p["label"] == "different" and not p["patient"]
                                      for p in result["pairs_joined_across_scans"])
    result["checked_files"] = [str(c) for c in args.checked]
    result["checked_pairs_among_picked"] = among
    result["scale"] = args.scale
    result["transforms"] = "extra" if args.extra else "standard"
    if args.to_label:
        write_rows(args.to_label, rows_to_label(result["pairs_joined_across_scans"], checked, args.seed))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def rows_to_label(joined: list[dict], checked: list[dict], seed: int) -> list[dict]:
    """The joined pairs no file labels, in the pair benchmark's columns, numbered on from the stress joins
    already labelled (part "stress"), so that once labelled they can be added to
    data/near_duplicate_stress_joins.csv as they are."""
    first = 1 + max((int(r["pair"]) for r in checked if r.get("part") == "stress" and r["pair"].isdigit()),
                    default=-1)
    todo = [p for p in joined if not p["label"]]
    return [{"pair": first + n, "a": p["a"], "b": p["b"], "label": "", "confidence": "", "part": "stress",
             "sampled_as": f"joined in the stress test: seed {seed}, {p['groupings']} groupings", "note": ""}
            for n, p in enumerate(todo)]


if __name__ == "__main__":
    sys.exit(main())
