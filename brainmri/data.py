"""Disk -> uint8 arrays: find MRI class folders, decode and resize with OpenCV into one uint8 array, cached.
(Arrays -> Keras input is brainmri.batches.)"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .atomic import save_arrays
from .duplicates import SIGNATURE_VERSION, canonical, copy_view
from .errors import UserError
from .paths import is_within

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SUBSETS = ("Training", "Testing")
UNREADABLE = "cannot be read"  # the skip reason of a file whose bytes could not be read: not cached (read_bytes)
MIN_SIDE = 16  # smaller images carry no usable anatomy: skipped and counted
STRETCH_PERCENTILES = (0.1, 99.9)  # a 16-bit or float image's grey range mapped to 0-255
KAGGLE_HINT = ("download it with: kaggle datasets download -d sartajbhuvaji/brain-tumor-classification-mri "
               "-p data --unzip   (or try the demo: python train.py --config configs/demo.yaml)")


@dataclass
class Dataset:
    """Decoded images (uint8, N x S x S x 3) with their labels and where they came from."""

    images: np.ndarray
    labels: np.ndarray  # int class index
    paths: list[str]  # relative to root, posix
    subsets: list[str]  # "Training", "Testing" or "" for a flat layout
    classes: tuple[str, ...]
    root: Path
    original_sizes: np.ndarray  # (N, 2) height, width before resizing
    md5: list[str]  # of the file's bytes: exact duplicates share it
    canon: np.ndarray  # (N, CANON, CANON) uint8 canonical slices from the full image (duplicates.canonical)
    copy_views: np.ndarray  # (N, COPY_SIDE, COPY_SIDE) uint8 whole images for the copy check (duplicates.copy_view)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def take(ds: Dataset, idx: np.ndarray) -> Dataset:
    """The images `idx` of a dataset, as a dataset."""
    return Dataset(images=ds.images[idx], labels=ds.labels[idx], paths=[ds.paths[i] for i in idx],
                   subsets=[ds.subsets[i] for i in idx], classes=ds.classes, root=ds.root,
                   original_sizes=ds.original_sizes[idx], md5=[ds.md5[i] for i in idx], canon=ds.canon[idx],
                   copy_views=ds.copy_views[idx], skipped=ds.skipped)


BINARY_CLASSES = ("no_tumor", "tumor")
NEGATIVE_NAMES = ("no_tumor", "no", "notumor", "no tumor", "normal", "healthy")


def negative_class_of(classes, configured: str = "auto") -> str:
    """The "no tumor" class among folder names: the configured one, or a usual name (no, no_tumor, ...)."""
    if configured != "auto":
        if configured not in classes:
            raise UserError(f"negative class '{configured}' is not among the classes {list(classes)}")
        return configured
    found = [c for c in classes if c.lower() in NEGATIVE_NAMES]
    if len(found) != 1:
        raise UserError(f"cannot tell which of {list(classes)} means 'no tumor': name it no/no_tumor, or set "
                        "negative_class")
    return found[0]


def to_binary(ds: Dataset, negative: str) -> Dataset:
    """Tumor (every class but `negative`) = 1 vs no tumor = 0, with classes ("no_tumor", "tumor")."""
    if len(ds.classes) < 2:
        raise UserError(f"the binary task needs a tumor and a no-tumor class; {ds.root} has only {list(ds.classes)}")
    neg = ds.classes.index(negative)
    return Dataset(images=ds.images, labels=(ds.labels != neg).astype(np.int32), paths=ds.paths, subsets=ds.subsets,
                   classes=BINARY_CLASSES, root=ds.root, original_sizes=ds.original_sizes, md5=ds.md5,
                   canon=ds.canon, copy_views=ds.copy_views, skipped=ds.skipped)


def find_images(root: str | Path, classes: tuple[str, ...] = (), kind: str = "data"
                ) -> tuple[list[tuple[str, str, str]], tuple]:
    """List (relative path, class, subset) in either layout; check the class folders agree. kind: what the
    folder is to the user, in messages ("data": the study's, with the hint to download it; "test": an
    external test folder)."""
    items, classes, _ = _scan(root, classes, kind)
    return items, classes


def _scan(root: str | Path, classes: tuple[str, ...] = (), kind: str = "data"
          ) -> tuple[list[tuple[str, str, str]], tuple, list]:
    """find_images, and the (relative path, reason) of each entry that is not listed (each logged; load_dataset
    counts them as skipped): what image_files does not list in a class folder, and images beside the class
    folders of Training/ and Testing/."""
    root = Path(root)
    hint = f"; {KAGGLE_HINT}" if kind == "data" else ""
    if root.exists() and not root.is_dir():
        raise UserError(f"{kind} folder {root} is a file, not a folder")
    if not root.is_dir():
        raise UserError(f"{kind} folder not found: {root}{hint}")
    subsets = [s for s in SUBSETS if (root / s).is_dir()] or [""]
    found = {s: sorted(p.name for p in (root / s).iterdir() if p.is_dir() and not p.name.startswith(".")) for s in subsets}
    if not any(found.values()):
        raise UserError(f"no class folders in {root}: expected Training/<class>/ and Testing/<class>/, or <class>/ "
                        f"folders{hint}")
    if len(subsets) == 2 and found["Training"] != found["Testing"]:
        raise UserError(f"class folders differ between {root}/Training {found['Training']} and {root}/Testing {found['Testing']}")
    folder_classes = tuple(found[subsets[0]])
    classes = tuple(classes) or folder_classes
    missing = sorted(set(classes) - set(folder_classes))
    if missing:
        raise UserError(f"class folder(s) {missing} missing in {root / subsets[0]} (found {list(folder_classes)})")
    extra = sorted(set(folder_classes) - set(classes))
    if extra:
        raise UserError(f"unexpected class folder(s) {extra} in {root / subsets[0]}; set 'classes' in the config to use them")
    _refuse_one_folder_twice([root / subset / label for subset in subsets for label in classes])
    items, unlisted = [], []
    for subset in subsets:
        if subset:  # an image beside the class folders has no label: counted, not guessed
            unlisted += [(p.relative_to(root).as_posix(), "not in a class folder")
                         for p in sorted((root / subset).iterdir())
                         if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
        for label in classes:
            folder = root / subset / label
            images, others = image_files(folder, within=root)
            if not images:
                raise UserError(f"class folder {folder} holds no images" + _what_it_holds(others))
            items += [(p.relative_to(root).as_posix(), label, subset) for p in images]
            unlisted += [(p.relative_to(root).as_posix(), why) for p, why in others]
    for rel, why in unlisted:
        log.warning("skipped %s: %s", root / rel, why)
    return items, classes, unlisted


def image_files(folder: Path, within: Path | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files under `folder`, any depth and extension case, sorted, linked folders followed (each real
    folder once: a link back up does not loop), hidden files and folders left out (a viewer's thumbnails, .DS_Store);
    and (path, why) for every other entry: not an image file, a link whose target is missing, a folder that
    cannot be read, and, given the data folder `within`, a link to a part of it outside `folder` (another class's
    images, or the Training folder, would be listed under this class's label). Every reader of image folders
    lists them here, so none drops a file unsaid."""
    images, others, seen = [], [], set()

    def unreadable(err: OSError) -> None:
        others.append((Path(err.filename), f"folder cannot be read ({err.strerror})"))

    for top, folders, files in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(f for f in folders if not f.startswith("."))  # sorted: the same paths on any file system
        for name in [f for f in folders if within is not None and _links_elsewhere(Path(top) / f, folder, within)]:
            folders.remove(name)
            others.append((Path(top) / name, "a link to another part of the data folder, or to one holding it (its "
                                             "images have their own class)"))
        for name in (f for f in files if not f.startswith(".")):
            p = Path(top) / name
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                images.append(p)
            else:
                others.append((p, "broken link (its target is missing)" if p.is_symlink() and not p.exists()
                               else "not an image file"))
    return sorted(images), sorted(others)


def _refuse_one_folder_twice(folders: list[Path]) -> None:
    """Refuse class folders that are one folder (a link to another class's, or Testing's to Training's): each
    image would be listed under both labels, or trained and tested on at once."""
    seen: dict[str, Path] = {}
    for folder in folders:
        real = os.path.realpath(folder)
        if real in seen:
            raise UserError(f"class folders {folder} and {seen[real]} are one folder (a link): each image would be "
                            "listed twice; give each class folder its own images")
        seen[real] = folder


def _links_elsewhere(path: Path, folder: Path, root: Path) -> bool:
    """Whether `path` is a link that leads out of `folder` into `root`, or to a folder holding `root` (whose
    walk would list the whole data folder)."""
    return path.is_symlink() and not is_within(path, folder) and (is_within(path, root) or is_within(root, path))


def _what_it_holds(others: list[tuple[Path, str]]) -> str:
    """' (broken link (its target is missing): 2, not an image file: 1)': what a folder without images holds."""
    counts = Counter(why for _, why in others)
    return f" ({', '.join(f'{why}: {n}' for why, n in counts.items())})" if counts else ""


def decode(path: str | Path) -> np.ndarray:
    """Read any common image (grey, RGB, RGBA, 16-bit) as 3-channel uint8 RGB; raise ValueError if it cannot be
    read or used (every reader skips and counts on that one error)."""
    return decode_bytes(read_bytes(path))


def read_bytes(path: str | Path) -> np.ndarray:
    """A file's bytes (np.fromfile copes with non-ASCII paths); ValueError if it cannot be read (permissions, a
    folder or device named like an image, I/O)."""
    try:
        return np.fromfile(str(path), np.uint8)
    except OSError as err:
        raise ValueError(f"{UNREADABLE} ({err.strerror or err})") from err


def decode_bytes(data: np.ndarray) -> np.ndarray:
    """Decode an encoded image held in memory; see decode(). Smaller than MIN_SIDE on a side: ValueError."""
    if data.size == 0:
        raise ValueError("empty file")
    try:
        # any depth and colour, EXIF orientation applied (IMREAD_UNCHANGED ignores it: a photo turned by its
        # EXIF tag, as every viewer shows it, was read sideways); an alpha channel is dropped, as it was before
        img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as err:  # a header OpenCV refuses (a size beyond its limit, say)
        raise ValueError(f"not a readable image ({str(err).strip().splitlines()[-1]})") from err
    if img is None:
        raise ValueError("not a readable image")
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"too small ({w}x{h} px)")
    if img.dtype != np.uint8:  # 16-bit or float: its grey range mapped to 0-255 (a constant image: black)
        img = img.astype(np.float32)
        if not np.isfinite(img).all():  # one such pixel made the whole stretch NaN: a black image, silently
            raise ValueError("NaN or infinite pixel values")
        # the range between the 0.1st and 99.9th percentiles of the grey or colour channels, not alpha (a few
        # hot or cold pixels, conversion artefacts, darkened the whole picture when it was the min and the max),
        # what lies beyond it clipped
        colour = img[..., :3] if img.ndim == 3 else img
        lo, hi = (float(v) for v in np.percentile(colour, STRETCH_PERCENTILES))
        img = np.clip((img - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_resized(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int], str, np.ndarray, np.ndarray]:
    """Decode and resize to size x size (area when shrinking); return image, original (h, w), file MD5, the
    canonical slice and the copy view for near-duplicate search (both made from the full image, so the
    search is the same whatever size a model is trained at)."""
    data = read_bytes(path)
    img = decode_bytes(data)
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_CUBIC
    return (cv2.resize(img, (size, size), interpolation=interp), (h, w), hashlib.md5(data.tobytes()).hexdigest(),
            canonical(img), copy_view(img))


def _cache_key(root: Path, items: list, size: int) -> str:
    h = hashlib.sha1(f"v5|{SIGNATURE_VERSION}|{root.resolve()}|{size}".encode())  # v5: EXIF orientation
    for rel, label, _ in items:
        st = os.stat(root / rel)
        h.update(f"{rel}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_dataset(root: str | Path, size: int, classes: tuple = (), cache_dir: str | Path | None = None,
                 workers: int | None = None, kind: str = "data") -> Dataset:
    """Find, decode and resize every image (threads; OpenCV releases the GIL); cached as .npz by content. kind:
    see find_images."""
    root = Path(root)
    items, classes, unlisted = _scan(root, classes, kind)
    cache = Path(cache_dir) / f"images-{_cache_key(root, items, size)}.npz" if cache_dir else None
    if cache and cache.is_file():
        try:
            return _from_cache(cache, root, classes, unlisted)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a damaged file: decode again
            log.warning("image cache %s cannot be read (%s): decoding the images again", cache, err)
    workers = workers or min(8, os.cpu_count() or 1)

    def work(item):
        try:
            return load_resized(root / item[0], size)
        except (ValueError, cv2.error) as err:
            return str(err)

    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(work, items), total=len(items), desc=f"decode+resize {size}px", unit="img",
                            disable=None))
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    undecoded = [(items[i][0], results[i]) for i in range(len(items)) if isinstance(results[i], str)]
    for rel, why in undecoded:
        log.warning("skipped %s: %s", root / rel, why)
    if not keep:
        raise UserError(f"no readable images under {root}")
    ds = Dataset(
        images=np.stack([results[i][0] for i in keep]),
        labels=np.array([classes.index(items[i][1]) for i in keep], np.int32),
        paths=[items[i][0] for i in keep], subsets=[items[i][2] for i in keep], classes=classes, root=root,
        original_sizes=np.array([results[i][1] for i in keep], np.int32), md5=[results[i][2] for i in keep],
        canon=np.stack([results[i][3] for i in keep]), copy_views=np.stack([results[i][4] for i in keep]),
        skipped=sorted(unlisted + undecoded))
    unread = sum(why.startswith(UNREADABLE) for _, why in undecoded)
    if cache and unread:  # permissions or I/O mended later leave the key (size, time) as it is: read them again
        log.warning("image cache not written: %d files could not be read (they are tried again next run)", unread)
    elif cache:
        _to_cache(cache, ds, undecoded)
    return ds


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """skipped.csv: every file that was not used, and why (path relative to its data folder)."""
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "reason"), *skipped])


def skipped_phrase(count: int) -> str:
    """'1 file skipped', '3 files skipped'."""
    return f"{count} file{'' if count == 1 else 's'} skipped"


def _to_cache(path: Path, ds: Dataset, undecoded: list) -> None:
    """The arrays, and the files found undecodable (not those unlisted: they are not part of the key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_arrays(path, images=ds.images, labels=ds.labels, paths=np.array(ds.paths), subsets=np.array(ds.subsets),
                original_sizes=ds.original_sizes, md5=np.array(ds.md5), canon=ds.canon, copy_views=ds.copy_views,
                skipped=np.array(undecoded, dtype=str).reshape(-1, 2))  # a crash never leaves half a cache


def _from_cache(path: Path, root: Path, classes: tuple, unlisted: list) -> Dataset:
    """The cached arrays; what is skipped: the files the cache found undecodable and those not listed now
    (unlisted, from _scan: they are not part of the cache's key)."""
    with np.load(path) as z:
        return Dataset(images=z["images"], labels=z["labels"], paths=z["paths"].tolist(), subsets=z["subsets"].tolist(),
                       classes=classes, root=root, original_sizes=z["original_sizes"], md5=z["md5"].tolist(),
                       canon=z["canon"], copy_views=z["copy_views"],
                       skipped=sorted(unlisted + [tuple(r) for r in z["skipped"].tolist()]))
