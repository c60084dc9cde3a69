"""Near-duplicate detection that survives what this dataset does to its copies: re-cropping, rescaling,
re-compression, small shifts, contrast changes and burned-in text.

Each image is reduced once, as it is decoded, to a *canonical slice*: grey, cropped to the head's bounding
box (text and thin marks removed first), padded to a square, resized to CANON px and histogram-equalised
(so gamma and contrast changes do not matter); and to a *copy view*: the whole image, no box, grey,
COPY_SIDE px square, equalised. Pairs are then found in three steps, with no all-pairs Python loop:

1. retrieval: every canonical slice, and windows of it at zooms below 1 placed at the centre and in the
   corners (a re-cropped copy is a window of its source, rarely a centred one), becomes a 16x16 z-scored
   vector; one matrix product per chunk gives the cosine similarity of every image with every other, and
   each image keeps its K best candidates.
2. verification: each candidate pair is scored by the best normalised cross-correlation of the two
   slices' band-passed structure (the outline of a head is shared by many patients, its inside is not),
   slid over a few pixels of shift and over finer zooms in the direction retrieval suggested
   (OpenCV's matchTemplate).
3. the copy check, on copy views: ORB keypoints and one affine map fitted to their matches by RANSAC. It
   looks at the pairs the correlation leaves open (each image's best few below SAME_SLICE), at the weak
   pairs (SAME_OR_ADJACENT to JOIN_ALWAYS), at each image's nearest by keypoint codes (the images sharing
   the most of its ORB descriptors' bit codes, keypoint_candidates: never correlated; a 20% crop, a shift
   of a tenth or large burned-in text often takes a copy out of the thumbnails' nearest, not out of
   these), and at each image's nearest by a turn- and mirror-proof vector (turn_vectors); then, for
   mirrored copies, at each image's nearest among the others' mirrored views by keypoint codes
   (mirrored_copies). A copy of one picture, however re-cropped, shifted, turned, mirrored, re-exposed or
   stamped with text, keeps dozens of matches on one map, or fewer that align its structure with the
   source's (all of it, or all but the pixels where burned-in text differs): it is raised to SAME_SLICE.
   Where the affine map fitted to enough matches is skewed (a crop's matches crowd into part of the
   picture), a similarity map of the same matches is tried; a pair it aligns is raised to JOIN_ALWAYS only
   (it joins its groups; the similarity map also aligns more adjacent slices of one scan). A
   weak pair that one map explains almost nothing of is dropped, as is one whose few matches all moved
   (slices of one scan keep their place in the frame); for this the matches are counted on keypoints
   spread over the picture (keypoint_support: the strongest crowd on a skull's rim or on burned-in text,
   which other patients' slices share by chance).

A pair whose score reaches the threshold (SAME_OR_ADJACENT) is a near-duplicate: the same slice or an
adjacent slice of one scan; from SAME_SLICE on it is taken to be the same slice (on the labelled pairs:
the same slice, or else an adjacent slice of the same scan, never another patient). Groups join through pairs
from JOIN_ALWAYS on, and through a weaker pair only where it is one group's best link to another (see
joining_pairs); exact copies (equal MD5) always join. The decision thresholds (SAME_OR_ADJACENT, SAME_SLICE,
COPY_INLIERS, COPY_ALIGNED, COPY_ALIGNED_WITHOUT_TEXT, SUPPORT_INLIERS, STILL_MATCHES, STILL_RADIUS) were
chosen on the "choose" half of data/near_duplicate_pairs.csv, 487 pairs labelled by eye, and measured on its other half
(tools/near_duplicate_benchmark.py); the others are cost settings, set by hand. tools/near_duplicate_stress.py
measures copies made at known strengths.

Given a cache folder (Detector.cache_dir, the run's cache_dir), the search keeps its pairs there, keyed by the
images, the threshold, this module's code and the libraries' versions: a later run on the same images reads
them instead of searching again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy
from scipy.sparse import coo_matrix, csr_matrix, vstack
from scipy.sparse.csgraph import connected_components

from .atomic import save_arrays

CANON = 48  # side of the canonical slice (px): enough to tell an adjacent slice from another patient's
SIGNATURE_VERSION = 3  # part of the image cache's key: bump it when canonical() or copy_view() changes
THUMB = 16  # side of the retrieval vectors
ZOOMS = (1.0, 0.9, 0.8, 0.7)  # retrieval: share of the source a re-cropped copy may keep (per side)
WINDOW_PLACES = ((0.5, 0.5), (0, 0), (0, 1), (1, 0), (1, 1))  # each zoom's windows: centre, then corners
VERIFY_ZOOMS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # verification: the same range, finer
BAND_SIGMA = 6.0  # verification compares structure: the slice minus its blur at this sigma (px of CANON)
CANDIDATES = 6  # retrieval keeps this many nearest images per image
MIN_RETRIEVAL = 0.6  # cosine similarity below which a candidate is not verified at all
CHUNK_FLOATS = 2e7  # retrieval makes its similarities this many at a time (80 MB per float32 array: bounded memory)
SAME_OR_ADJACENT = 0.72  # verified score from which a pair is the same or an adjacent slice (benchmark)
SAME_SLICE = 0.9  # verified score from which a pair is the same slice (label conflicts are listed from here)
JOIN_ALWAYS = 0.85  # a pair this close joins its two groups; a weaker one only as a group's best link
COPY_SIDE = 160  # the copy check looks at each whole image resized to this square (copy_view)
COPY_KEYPOINTS = 150  # ORB keypoints per image for the copy check
COPY_INLIERS = 40  # RANSAC inliers from which a pair is a copy: above every 'different' pair of the choose half (27)
ALIGN_INLIERS = 10  # fewer inliers: ... a copy when the fit's alignment correlates from COPY_ALIGNED on (set by
#                      hand: a fit on fewer matches is too often chance)
ALIGN_SIGMA = COPY_SIDE / 16  # ... correlation of structure: the slice minus its blur (a head's outline is common)
COPY_ALIGNED = 0.76  # 0.1 above every 'different' pair of the choose half (0.658)
TEXT_SHARE = 0.05  # ... or correlates without the pixels where the two disagree most: this share of them
COPY_ALIGNED_WITHOUT_TEXT = 0.88  # ... from here (0.1 above every 'different' pair of the choose half, 0.78)
COPY_CHECK_PER_IMAGE = 2  # the copy check sees each image's best this many open pairs (a cost setting)
COPY_FLOOR = 0.4  # ... whose correlation reached at least this (lower: other pictures; a cost setting)
TURN_RADII, TURN_FREQUENCIES = 32, 8  # the turn- and mirror-proof retrieval vectors (turn_vectors)
CODE_BITS, CODE_TABLES = 20, 8  # keypoint retrieval: each ORB descriptor gives CODE_TABLES codes of CODE_BITS bits
CODE_MAX_IMAGES = 50  # ... a code found in more images than this is common structure, not a copy: not counted
KEYPOINT_CANDIDATES = 1  # ... each image's this many images sharing the most codes go to the copy check (2: no gain)
MIRROR_CANDIDATES = 1  # ... and this many among the mirrored views of the others (mirrored_copies)
SUPPORT_INLIERS = 6  # a weak pair needs this many inliers (choose half: precision 0.867 -> 0.900, recall kept;
#                        re-tried with the spread keypoints below: none better, as for STILL_MATCHES)
SUPPORT_GRID = 4  # ... counted on keypoints spread over this many cells a side (keypoint_support; set by hand)
SPREAD_PER_CELL = 9  # ... at most this many of each cell, the strongest (set by hand: 150 in all, as the copy check)
SPREAD_CANDIDATES = 600  # ... among this many ORB keypoints of the view (set by hand)
STILL_RADIUS = COPY_SIDE / 20  # ... and, below ALIGN_INLIERS, STILL_MATCHES matches that moved at most this far
STILL_MATCHES = 5  # (8 px): slices of one scan share their framing (choose half: precision 0.900 -> 0.947, recall kept)
WORK_SIDE = 256  # images are reduced to this longer side first (speed; a 48 px slice needs no more)
BOX_SIDE = 96  # the head is found on an image of this longer side (speed: the box needs no detail)
FRAME_LEVEL = 64  # a border whose median grey is at least this is a frame around the picture, not its background
FRAME_TOLERANCE = 16  # ... and the picture is what differs from that grey by more than this
THREADS = min(8, os.cpu_count() or 1)  # verification and the copy check share pairs out (OpenCV frees the GIL)

log = logging.getLogger("brainmri")
CODE_KEY = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=12).hexdigest()  # part of the pair cache's key


def head_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the head: bright regions after thin strokes (text, markers, rulers) are opened away."""
    blurred = cv2.GaussianBlur(grey, (3, 3), 0)
    level = max(12.0, 0.12 * float(np.percentile(blurred, 99)))
    box = _box_of_big_parts(blurred > level)
    return (0, grey.shape[0], 0, grey.shape[1]) if box is None else box


def _box_of_big_parts(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a mask's big parts once thin strokes (text, markers, rulers) are opened away: its
    largest connected part and every part of at least 5% of that (big pieces of a head, not labels or specks);
    None where nothing is left."""
    side = max(3, int(round(min(mask.shape) / 30)) | 1)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = stats[1:][areas >= 0.05 * areas.max()]
    x0, y0 = keep[:, cv2.CC_STAT_LEFT].min(), keep[:, cv2.CC_STAT_TOP].min()
    x1 = (keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max()
    y1 = (keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max()
    return int(y0), int(y1), int(x0), int(x1)


def _shrunk(grey: np.ndarray, longest: int) -> np.ndarray:
    """The image with its longer side at most `longest` (area interpolation; smaller images as they are)."""
    f = longest / max(grey.shape)
    if f >= 1:
        return grey
    return cv2.resize(grey, (max(1, round(grey.shape[1] * f)), max(1, round(grey.shape[0] * f))),
                      interpolation=cv2.INTER_AREA)


def canonical(image: np.ndarray, side: int = CANON) -> np.ndarray:
    """The canonical slice of an image (any size, grey or RGB): light frame trimmed, head box, square, side x
    side, equalised."""
    grey = _shrunk(_unframed(_grey(image)), WORK_SIDE)
    f = min(1.0, BOX_SIDE / max(grey.shape))
    y0, y1, x0, x1 = head_box(_shrunk(grey, BOX_SIDE))
    head = grey[int(y0 / f):int(np.ceil(y1 / f)), int(x0 / f):int(np.ceil(x1 / f))]
    h, w = head.shape
    n = max(h, w)
    square = np.zeros((n, n), np.uint8)
    square[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = head
    return cv2.equalizeHist(cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA))


def canonical_slices(images) -> np.ndarray:
    """(N, CANON, CANON) uint8 canonical slices of a list or array of images."""
    return np.stack([canonical(im) for im in images]) if len(images) else np.zeros((0, CANON, CANON), np.uint8)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def _zoomed(canon: np.ndarray, zoom: float, side: int, place: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """The `zoom` share of each slice (per side) at `place` ((0, 0) top left, (0.5, 0.5) the centre, (1, 1)
    bottom right), resized to side x side."""
    if not len(canon):
        return np.zeros((0, side, side), np.uint8)
    n = canon.shape[1]
    w = int(round(n * zoom))
    y, x = (int(round((n - w) * f)) for f in place)
    return np.stack([cv2.resize(c[y:y + w, x:x + w], (side, side), interpolation=cv2.INTER_AREA) for c in canon])


def retrieval_vectors(canon: np.ndarray) -> np.ndarray:
    """(1 + (len(ZOOMS) - 1) * len(WINDOW_PLACES), N, THUMB*THUMB) unit vectors: the whole slice first, then
    each zoom's windows."""
    views = [_zoomed(canon, 1.0, THUMB)] + [_zoomed(canon, z, THUMB, place) for z in ZOOMS[1:]
                                             for place in WINDOW_PLACES]
    return np.stack([_unit_rows(v) for v in views])


def candidate_pairs(vectors_a: np.ndarray, vectors_b: np.ndarray | None = None, k: int = CANDIDATES,
                    min_similarity: float = MIN_RETRIEVAL) -> np.ndarray:
    """(M, 2) index pairs (i in a, j in b) among each image's k most similar, in either zoom direction (the
    similarity of a pair is the best of a window of one against the other whole, either way round). Without
    b, pairs within a (i < j). Memory stays bounded: the similarities are made a chunk at a time."""
    if vectors_b is None:
        return _candidates_within(vectors_a, k, min_similarity)
    zooms, n_b = vectors_b.shape[0], vectors_b.shape[1]
    chunk = max(16, int(CHUNK_FLOATS // max(1, zooms * n_b)))
    out = []
    for start in range(0, vectors_a.shape[1], chunk):
        stop = min(start + chunk, vectors_a.shape[1])
        sim = np.max(vectors_a[:, start:stop] @ vectors_b[0].T, axis=0)  # b inside a zoomed-in a
        sim = np.maximum(sim, np.max(vectors_b @ vectors_a[0, start:stop].T, axis=0).T)  # a inside b
        kk = min(k, sim.shape[1])
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        rows = np.repeat(np.arange(start, stop), kk)
        cols = top.ravel()
        good = sim[rows - start, cols] >= min_similarity
        out.append(np.stack([rows[good], cols[good]], 1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    return pairs.astype(np.int64).reshape(-1, 2)


def _candidates_within(vectors: np.ndarray, k: int, min_similarity: float) -> np.ndarray:
    """candidate_pairs within one set at half the cost. The similarity of i and j is the larger of
    window(i).whole(j) and window(j).whole(i): of one matrix and of its transpose, so only the first is made.
    An entry that makes j one of i's k best is among the k best of i's row or of i's column of that matrix
    (k others beating it there would beat j in the full similarity too), so each image keeps those two
    lists while the chunks pass (its column as a running best k) and then its k best of them by the larger
    entry: the same pairs as computing both ways (up to ties)."""
    zooms, n = vectors.shape[0], vectors.shape[1]
    kk = min(k, n - 1)
    if kk < 1:
        return np.zeros((0, 2), np.int64)
    chunk = max(16, int(CHUNK_FLOATS // max(1, zooms * n)))
    images, others, values = [], [], []
    col_value, col_row = np.full((kk, n), -np.inf, np.float32), np.zeros((kk, n), np.int64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sim = np.max(vectors[:, start:stop] @ vectors[0].T, axis=0)  # row i: j's whole in a window of i
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        images.append(np.repeat(np.arange(start, stop), kk))
        others.append(top.ravel())
        values.append(np.take_along_axis(sim, top, axis=1).ravel())
        if zooms == 1:  # one view: the matrix is symmetric, a column is the row
            continue
        kc = min(kk, stop - start)
        best = np.argpartition(-sim, kc - 1, axis=0)[:kc]  # per column, this chunk's best rows
        value = np.concatenate([col_value, np.take_along_axis(sim, best, axis=0)])
        row = np.concatenate([col_row, best + start])
        keep = np.argpartition(-value, kk - 1, axis=0)[:kk]
        col_value, col_row = np.take_along_axis(value, keep, axis=0), np.take_along_axis(row, keep, axis=0)
    columns = np.isfinite(col_value.ravel())
    image = np.concatenate(images + [np.tile(np.arange(n), kk)[columns]])
    other = np.concatenate(others + [col_row.ravel()[columns]])
    value = np.concatenate(values + [col_value.ravel()[columns]])
    order = np.lexsort((-value, other, image))  # per (image, other): its larger entry first
    image, other, value = image[order], other[order], value[order]
    first = np.r_[True, (image[1:] != image[:-1]) | (other[1:] != other[:-1])]
    image, other, value = image[first], other[first], value[first]
    order = np.lexsort((-value, image))  # per image: best first
    image, other, value = image[order], other[order], value[order]
    rank = np.arange(len(image)) - np.searchsorted(image, image)
    chosen = (rank < kk) & (value >= min_similarity)
    pairs = np.sort(np.stack([image[chosen], other[chosen]], 1), axis=1)
    return np.unique(pairs, axis=0).astype(np.int64).reshape(-1, 2)


def likely_zoom(vectors_a: np.ndarray, vectors_b: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per pair, the retrieval's best view as a signed index: +v (b is a crop of a, view v of
    retrieval_vectors), -v (a of b), 0 (the same framing)."""
    out = np.empty(len(pairs), np.int64)
    for start in range(0, len(pairs), 50_000):  # bounded memory at any size
        i, j = pairs[start:start + 50_000, 0], pairs[start:start + 50_000, 1]
        a_in = np.einsum("zpd,pd->zp", vectors_a[:, i], vectors_b[0, j])  # b matches a zoomed-in a
        b_in = np.einsum("zpd,pd->zp", vectors_b[:, j], vectors_a[0, i])
        out[start:start + len(i)] = np.where(a_in.max(0) >= b_in.max(0), a_in.argmax(0), -b_in.argmax(0))
    return out


def _shift_match(a: np.ndarray, b: np.ndarray) -> float:
    """Best NCC of b's centre slid a few pixels over a: the same framing, shifted."""
    pad = max(1, a.shape[0] // 16)
    padded = cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return float(cv2.matchTemplate(padded, b[pad:-pad, pad:-pad], cv2.TM_CCOEFF_NORMED).max())


def _zoom_match(a: np.ndarray, b: np.ndarray, zoom: float) -> float:
    """Best NCC of b shrunk to `zoom` of a's side and slid over a: b is a re-cropped part of a."""
    side = int(round(a.shape[0] * zoom))
    return float(cv2.matchTemplate(a, cv2.resize(b, (side, side), interpolation=cv2.INTER_AREA),
                                   cv2.TM_CCOEFF_NORMED).max())


def _zooms_to_try(hint: int | None) -> list[tuple[int, int]]:
    """(direction, index into VERIFY_ZOOMS) to verify: +1 b inside a, -1 a inside b. The retrieval's hint
    (signed index of a view, likely_zoom) gives the direction; at the same framing, small crops either way."""
    every = range(1, len(VERIFY_ZOOMS))
    if hint is None:
        return [(d, z) for d in (1, -1) for z in every]
    if hint == 0:
        return [(d, z) for d in (1, -1) for z in (1, 2)]
    return [(1 if hint > 0 else -1, z) for z in every]


def structure(canon: np.ndarray) -> np.ndarray:
    """Band-passed slices (float32): a head's outline and overall brightness are shared by many patients, the
    structure inside it is not (measured on the pair benchmark: precision and recall both rise)."""
    out = canon.astype(np.float32)
    return np.stack([_minus_blur(c, BAND_SIGMA) for c in out]) if len(out) else out


def _minus_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    image = image.astype(np.float32)
    return image - cv2.GaussianBlur(image, (0, 0), sigma)


def stretched(canon: np.ndarray) -> np.ndarray:
    """Each canonical slice with its head stretched to fill the square: the same for a copy whose width or
    height alone was rescaled (an image resized to a square, say), which padding to a square is not."""
    out = np.empty_like(canon)
    for k, c in enumerate(canon):
        y0, y1, x0, x1 = head_box(c)
        out[k] = cv2.resize(c[y0:y1, x0:x1], c.shape[::-1], interpolation=cv2.INTER_AREA)
    return out


def verify(canon_a: np.ndarray, canon_b: np.ndarray, pairs: np.ndarray, zoom_hint: np.ndarray | None = None,
           stretched_a: np.ndarray | None = None, stretched_b: np.ndarray | None = None) -> np.ndarray:
    """Verified similarity (best normalised cross-correlation of structure, -1..1) of each pair (i in a, j in b):
    shifted at the same framing, re-cropped at finer zooms in the retrieval's direction (every zoom without a
    hint), and with both heads stretched to the square (stretched_a/b where the caller has them already).
    Threads share the pairs (OpenCV releases the GIL)."""
    same = canon_b is canon_a
    a32 = structure(canon_a)
    b32 = a32 if same else structure(canon_b)
    sa32 = structure(stretched(canon_a) if stretched_a is None else stretched_a)
    sb32 = sa32 if same else structure(stretched(canon_b) if stretched_b is None else stretched_b)
    hints = [None] * len(pairs) if zoom_hint is None else [int(h) for h in zoom_hint]

    def score(n: int) -> float:
        i, j = pairs[n]
        best = max(_shift_match(a32[i], b32[j]), _shift_match(b32[j], a32[i]), _shift_match(sa32[i], sb32[j]))
        if best >= SAME_SLICE:  # every decision is taken already: the zooms can only raise it
            return best
        peak = {1: -1.0, -1: -1.0}
        for direction, z in _zooms_to_try(hints[n]):  # zooms in order: stop a direction once past its peak
            if peak[direction] is None:
                continue
            outer, inner = (a32[i], b32[j]) if direction > 0 else (b32[j], a32[i])
            score = _zoom_match(outer, inner, VERIFY_ZOOMS[z])
            best = max(best, score)
            peak[direction] = None if score < peak[direction] - 0.05 else max(peak[direction], score)
        return best

    with ThreadPoolExecutor(THREADS) as pool:
        scores = np.fromiter(pool.map(score, range(len(pairs)), chunksize=256), np.float32, len(pairs))
    return np.nan_to_num(scores, nan=-1.0)


def copy_view(image: np.ndarray) -> np.ndarray:
    """What the copy check looks at: the whole image (no head box; a light frame trimmed), grey, resized to a
    COPY_SIDE square and equalised. Made from the full image as it is decoded, so the check does not depend on
    the size a model is trained at (runs at 64 and 260 px group alike); a copy stretched to another shape is an
    affine map of its source."""
    grey = _unframed(_grey(image))
    shrink = grey.shape[0] * grey.shape[1] > COPY_SIDE ** 2
    return cv2.equalizeHist(cv2.resize(grey, (COPY_SIDE, COPY_SIDE),
                                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))


def copy_views(images) -> np.ndarray:
    """(N, COPY_SIDE, COPY_SIDE) uint8 copy_view of each image."""
    return np.stack([copy_view(im) for im in images]) if len(images) else np.zeros((0, COPY_SIDE, COPY_SIDE), np.uint8)


def copy_features(views, mirrored: bool = False, spread: bool = False) -> list:
    """Per copy view: ORB keypoint positions (K, 2), their descriptors (K, 32), the view itself and a key of
    its content (copy_check orders every pair by it, so a pair is judged the same whichever comes first).
    mirrored: of each view flipped left to right, kept as a flipped NumPy view of it (no second copy of the
    pixels: 2.6 GB at 100,000 images), made contiguous only while ORB reads it. spread: of SPREAD_CANDIDATES
    keypoints, the strongest of each cell of a grid instead of the COPY_KEYPOINTS strongest overall (_spread;
    keypoint_support)."""
    def one(view):
        shown = view[:, ::-1] if mirrored else view
        pixels = np.ascontiguousarray(shown)
        orb = cv2.ORB_create(SPREAD_CANDIDATES if spread else COPY_KEYPOINTS, fastThreshold=10, edgeThreshold=15,
                             patchSize=15)
        if spread:
            keys, descriptors = orb.compute(pixels, _spread(orb.detect(pixels, None), pixels.shape))
        else:
            keys, descriptors = orb.detectAndCompute(pixels, None)
        content = hashlib.blake2b(pixels.tobytes(), digest_size=8).digest()
        return np.float32([k.pt for k in keys]).reshape(-1, 2), descriptors, shown, content

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, views))


def _spread(keys: list, shape: tuple[int, int]) -> list:
    """The strongest keypoints of each cell of a SUPPORT_GRID x SUPPORT_GRID grid over an image of `shape`,
    SPREAD_PER_CELL of each (all of a cell that has fewer), in their order in `keys`."""
    if not keys:
        return []
    where = np.float32([k.pt for k in keys])
    strength = np.float32([k.response for k in keys])
    row = np.minimum(where[:, 1] * SUPPORT_GRID // shape[0], SUPPORT_GRID - 1)
    column = np.minimum(where[:, 0] * SUPPORT_GRID // shape[1], SUPPORT_GRID - 1)
    cell = (row * SUPPORT_GRID + column).astype(np.int64)
    order = np.lexsort((-strength, cell))  # by cell, the strongest first (ties: in their order in keys)
    rank = np.arange(len(order)) - np.searchsorted(cell[order], cell[order])
    return [keys[k] for k in np.sort(order[rank < SPREAD_PER_CELL])]


def keypoint_support(views: np.ndarray, views_b: np.ndarray | None, pairs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (i in views, j in views_b; views_b None: both in views): how many keypoint matches one affine
    map explains and how many sit still (copy_check), on keypoints spread over the picture (at most
    SPREAD_PER_CELL of each cell of a grid). The strongest keypoints of a slice crowd on its
    brightest edges: the skull's rim, the head's outline, burned-in text, which slices of other patients at
    that level share and which line up by chance; spread, the matches have to agree over the whole head. On
    the labelled pairs, the 'different' pairs' best count fell from 27 / 21 (choose / report half) to 12 / 13;
    on the choose half 0.953 of the same and adjacent pairs keep support (0.988 on the strongest), 0.145 of the
    'different' ones (0.277). Features are made only for the images in pairs."""
    if not len(pairs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    features_a = _features_of(views, pairs[:, 0] if views_b is not None else pairs, spread=True)
    features_b = features_a if views_b is None else _features_of(views_b, pairs[:, 1], spread=True)
    inliers, _, still, _ = copy_check(features_a, features_b, pairs, counts_only=True)
    return inliers, still


def _features_of(views: np.ndarray, images: np.ndarray, **options) -> dict:
    """copy_features(**options) of the given images only, by image index (copy_check looks them up so)."""
    needed = np.unique(images)
    return dict(zip(needed.tolist(), copy_features(views[needed], **options)))


def copy_check(features_a, features_b, pairs: np.ndarray, counts_only: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (i in a, j in b): how many cross-checked ORB matches one affine map explains (RANSAC, 3 px),
    whether the two are copies of one picture under that map (_one_picture), how many matches sit still
    (moved at most STILL_RADIUS: two slices of one scan keep their framing), and, where the affine map did
    not make them one picture though it explains ALIGN_INLIERS matches, whether a similarity map (scale, turn
    and shift only) of the same matches does. The affine map of a crop or a rescaled copy is often skewed by
    a few percent (its matches crowd into part of the picture), too far for the aligned correlation; the
    similarity map, with two fewer degrees of freedom, is not (measured: tools/near_duplicate_stress.py, crop
    20%). It also makes more adjacent slices of one scan look like one picture (the pair benchmark), so a pair
    found this way joins its groups but is not called the same slice (with_copy_check). Symmetric and
    deterministic: the two are taken in the order of their content, the map is fitted from the first to the
    second and the other way too (the better count kept) unless the first settles it: a copy, or from
    SUPPORT_INLIERS to below ALIGN_INLIERS matches explained; OpenCV's RANSAC seeds itself on every call.
    counts_only: the counts a weak pair's support is judged on and no copies (keypoint_support): a map that
    explains ALIGN_INLIERS matches ends the search (its count is returned, not the better of the two: it is
    support enough whatever else the pair shows)."""
    structures: dict[bytes, np.ndarray] = {}  # a view's structure, made once however many pairs align onto it

    def structure_of(view: np.ndarray, key: bytes) -> np.ndarray:
        if key not in structures:
            structures[key] = _minus_blur(view, ALIGN_SIGMA)
        return structures[key]

    def one(pair) -> tuple[int, bool, int, bool]:
        first, second = features_a[int(pair[0])], features_b[int(pair[1])]
        (pos_a, desc_a, view_a, key_a), (pos_b, desc_b, view_b, key_b) = sorted((first, second), key=lambda f: f[3])
        if desc_a is None or desc_b is None or min(len(desc_a), len(desc_b)) < 3:
            return 0, False, 0, False
        matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(desc_a, desc_b)
        if len(matches) < 3:
            return 0, False, 0, False
        src, dst = pos_a[[m.queryIdx for m in matches]], pos_b[[m.trainIdx for m in matches]]
        still = int((np.linalg.norm(src - dst, axis=1) <= STILL_RADIUS).sum())
        ways = ((src, dst, (view_a, key_a, view_b, key_b)), (dst, src, (view_b, key_b, view_a, key_a)))
        best = 0
        for moving, fixed, pictures in ways:
            fit, count = _fitted(cv2.estimateAffine2D, moving, fixed)
            best = max(best, count)
            if counts_only and count >= ALIGN_INLIERS:
                return best, False, still, False
            if not counts_only and _one_picture(*pictures, fit, count, structure_of):
                return best, True, still, False
            if SUPPORT_INLIERS <= count < ALIGN_INLIERS:  # support enough, too few for a copy this way,
                break  # and the other way round explains about as many (measured: within 5)
        if best >= ALIGN_INLIERS and not counts_only:
            for moving, fixed, pictures in ways:
                if _one_picture(*pictures, *_fitted(cv2.estimateAffinePartial2D, moving, fixed), structure_of):
                    return best, False, still, True
        return best, False, still, False

    with ThreadPoolExecutor(THREADS) as pool:
        found = list(pool.map(one, pairs, chunksize=64))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, bool)
    inliers, copies, still, similar = (np.array(column) for column in zip(*found))
    return inliers.astype(np.int64), copies.astype(bool), still.astype(np.int64), similar.astype(bool)


def _fitted(estimate, moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray | None, int]:
    """A map from `moving` to `fixed` points by `estimate` (cv2.estimateAffine2D or estimateAffinePartial2D;
    RANSAC, 3 px) and how many point pairs it explains (0 where none was found)."""
    fit, inliers = estimate(moving, fixed, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    return fit, 0 if fit is None else int(inliers.sum())


def _one_picture(view_moving: np.ndarray, key_moving: bytes, view_fixed: np.ndarray, key_fixed: bytes,
                 fit: np.ndarray, count: int, structure_of) -> bool:
    """Whether an affine map `fit` that explains `count` keypoint matches makes two views one picture: it
    explains COPY_INLIERS, or at least ALIGN_INLIERS and the views warped onto each other by it (either onto
    the other) correlate from COPY_ALIGNED on (where either shows more than background), or from
    COPY_ALIGNED_WITHOUT_TEXT on without the pixels where burned-in text differs. structure_of(view, key):
    a view's structure (_minus_blur at ALIGN_SIGMA), cached by the caller."""
    if count >= COPY_INLIERS:
        return True
    if count < ALIGN_INLIERS:
        return False
    back = cv2.invertAffineTransform(fit)
    for moving, fixed, key, onto in ((view_moving, view_fixed, key_fixed, fit),
                                     (view_fixed, view_moving, key_moving, back)):
        everywhere, without_text = _aligned_correlations(moving, fixed, onto, structure_of(fixed, key))
        if everywhere >= COPY_ALIGNED or without_text >= COPY_ALIGNED_WITHOUT_TEXT:
            return True
    return False


def _aligned_correlations(grey_a: np.ndarray, grey_b: np.ndarray, fit: np.ndarray,
                          structure_b: np.ndarray | None = None) -> tuple[float, float]:
    """Correlation of the structure of a warped onto b by `fit` with b's, over the pixels both cover where
    either is not black (a shared black background would make any two heads alike): over all of them, and
    without the TEXT_SHARE of them where the two disagree most (text or marks burned into one image only);
    -1 where too little overlaps. Structure, not brightness: two synthetic heads of one shape correlate 0.86
    in brightness. structure_b: b's structure where the caller has it already."""
    side = grey_b.shape[::-1]
    warped = cv2.warpAffine(grey_a.astype(np.float32), fit, side, flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.ones(grey_a.shape, np.uint8), fit, side, flags=cv2.INTER_NEAREST) > 0
    keep = covered & ((grey_b > 8) | (warped > 8))
    if keep.sum() < 0.15 * keep.size:
        return -1.0, -1.0
    if structure_b is None:
        structure_b = _minus_blur(grey_b, ALIGN_SIGMA)
    x, y = _minus_blur(warped, ALIGN_SIGMA)[keep], structure_b[keep]
    disagreement = np.abs((x - x.mean()) / (x.std() + 1e-6) - (y - y.mean()) / (y.std() + 1e-6))
    cut = int((1 - TEXT_SHARE) * (len(disagreement) - 1))
    agree = disagreement <= np.partition(disagreement, cut)[cut]
    return _correlation(x, y), _correlation(x[agree], y[agree])


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-6))


def _unframed(grey: np.ndarray) -> np.ndarray:
    """The picture without a frame of one grey around it (a white border, a page or slide around a figure, a
    background lifted to grey): the box of the big parts of what differs from the border's median grey by more
    than FRAME_TOLERANCE (_box_of_big_parts: a caption or a mark on the frame is not the picture), where that
    grey is FRAME_LEVEL or lighter. A black border is a scan's own background, which the head box and the copy
    check cope with; a light one was not: copies of different slices with a white border looked alike and
    joined each other (measured: tools/near_duplicate_stress.py --extra, white_pad)."""
    if min(grey.shape) < 8:
        return grey
    ring = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    level = float(np.median(ring))
    if level < FRAME_LEVEL:
        return grey
    box = _box_of_big_parts(np.abs(cv2.blur(grey, (3, 3)).astype(np.int16) - level) > FRAME_TOLERANCE)
    if box is None or min(box[1] - box[0], box[3] - box[2]) < 8:
        return grey  # nothing in it that differs: a plain picture, not a frame
    y0, y1, x0, x1 = box
    return grey[y0:y1, x0:x1]


def _grey(image) -> np.ndarray:
    """uint8 grey of an image as a dataset holds it (uint8 or float in 0-255, RGB or grey)."""
    image = np.asarray(image)
    image = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def turn_vectors(views: np.ndarray) -> np.ndarray:
    """(1, N, D) unit vectors that do not change when an image is turned about its centre or mirrored: the
    magnitudes of the angular Fourier series of each copy view in polar form (TURN_RADII radii, the lowest
    TURN_FREQUENCIES frequencies). Retrieval for copies that were turned (mirrored ones: mirrored_copies)."""
    def one(view):
        small = cv2.resize(view, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        polar = cv2.warpPolar(small, (TURN_RADII, 64), (32, 32), 32, cv2.WARP_POLAR_LINEAR)  # rows: angles
        return np.abs(np.fft.rfft(polar, axis=0))[:TURN_FREQUENCIES].ravel()

    rows = np.array([one(v) for v in views], np.float32).reshape(len(views), TURN_RADII * TURN_FREQUENCIES)
    return _unit_rows(rows)[None]


def keypoint_codes(features) -> csr_matrix:
    """(images, codes) 0/1 matrix: which codes the ORB descriptors of each image give. A descriptor gives
    CODE_TABLES codes, each CODE_BITS of its bits from its own three bytes (a descriptor's bits are separate
    binary tests). Two copies of one picture share dozens of descriptors that agree on all those bits,
    wherever the keypoints moved to (crops, shifts, turns, rescaling). Made 4,096 images at a time."""
    blocks = [_codes_of([f[1] for f in features[start:start + 4096]]) for start in range(0, len(features), 4096)]
    return vstack(blocks, format="csr") if blocks else csr_matrix((0, CODE_TABLES << CODE_BITS), dtype=np.float32)


def _codes_of(descriptors: list) -> csr_matrix:
    descriptors = [np.zeros((0, 32), np.uint8) if x is None else x for x in descriptors]
    owner = np.repeat(np.arange(len(descriptors)), [len(x) for x in descriptors])
    byte = np.concatenate(descriptors)[:, :3 * CODE_TABLES].astype(np.int32)
    low = (1 << (CODE_BITS - 16)) - 1
    codes = np.stack([byte[:, 3 * t] | byte[:, 3 * t + 1] << 8 | (byte[:, 3 * t + 2] & low) << 16 | t << CODE_BITS
                      for t in range(CODE_TABLES)], 1)  # (descriptors, tables)
    matrix = coo_matrix((np.ones(codes.size, np.float32), (np.repeat(owner, CODE_TABLES), codes.ravel())),
                        shape=(len(descriptors), CODE_TABLES << CODE_BITS)).tocsr()
    matrix.data[:] = 1  # a code once per image, however many of its descriptors give it
    return matrix


def keypoint_candidates(features_a, features_b=None, k: int = KEYPOINT_CANDIDATES,
                        not_itself: bool = False) -> np.ndarray:
    """(M, 2) pairs (i in a, j in b; within a, i < j) of each image with the k images that share the largest
    share of its keypoint codes (cosine; at least 2 codes), codes found in more than CODE_MAX_IMAGES images
    left out. Retrieval for the copy check that a crop, shift, turn or burned-in text does not throw off
    (measured: tools/near_duplicate_stress.py). Ties go to the image whose content key sorts first, so the
    pairs do not depend on the images' order. The codes are sparse; the counts in common are made a chunk of
    images at a time (CHUNK_FLOATS: bounded memory). not_itself: b is another view of a's images, one for
    one (their mirrored views), and image i of a is not a candidate for b's image i; the pairs then come
    both ways round (i, j) and (j, i), and a code counts as common from CODE_MAX_IMAGES of the two sets
    together."""
    within = features_b is None
    if not_itself and (within or len(features_b) != len(features_a)):
        raise ValueError("keypoint_candidates(not_itself=True) needs b to be another view of a, one for one")
    everything = list(features_a) if within else list(features_a) + list(features_b)
    n_a = len(features_a)
    codes = keypoint_codes(everything)
    images_with = np.bincount(codes.indices, minlength=codes.shape[1])
    telling = (images_with >= 2) & (images_with <= CODE_MAX_IMAGES)
    codes.data[~telling[codes.indices]] = 0
    codes.eliminate_zeros()
    size = np.sqrt(np.maximum(np.diff(codes.indptr), 1)).astype(np.float32)
    others = slice(0, None) if within else slice(n_a, None)
    other_codes = codes[others].transpose().tocsr()  # (codes, other images)
    key_order = np.argsort(np.array([f[3] for f in everything[others]], dtype="S8"), kind="stable")
    key_rank = np.empty(len(key_order), np.int64)
    key_rank[key_order] = np.arange(len(key_order))
    n_other = other_codes.shape[1]
    rows_per_chunk = max(1, int(CHUNK_FLOATS // max(1, n_other)))  # bounded memory: a chunk of rows, dense
    found = []
    for start in range(0, n_a, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_a)
        count = (codes[start:stop] @ other_codes).toarray()  # codes in common
        share = np.where(count >= 2, count / size[start:stop, None] / size[others][None], -1.0)
        if within or not_itself:
            share[np.arange(stop - start), np.arange(start, stop)] = -1.0
        for _ in range(min(k, n_other)):
            top = share.max(axis=1, keepdims=True)
            tied = (share == top) & (top > 0)
            best = np.argmin(np.where(tied, key_rank[None], np.iinfo(np.int64).max), axis=1)
            chosen = np.flatnonzero(tied.any(axis=1))
            found.append(np.stack([start + chosen, best[chosen]], 1))
            share[chosen, best[chosen]] = -1.0
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    if within:
        pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    return pairs.astype(np.int64).reshape(-1, 2)


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which (i, j) rows of `rows` are rows of `table` too."""
    def key(pairs: np.ndarray) -> np.ndarray:
        pairs = pairs.reshape(-1, 2).astype(np.int64)
        return pairs[:, 0] * (1 << 32) + pairs[:, 1]

    return np.isin(key(rows), key(table))


def open_pairs(pairs: np.ndarray, scores: np.ndarray, within: bool) -> np.ndarray:
    """Which pairs the correlation leaves open for the copy check: from COPY_FLOOR to below SAME_SLICE, and
    among the COPY_CHECK_PER_IMAGE best of those for one of its two images (within one set: both ends count
    for an image)."""
    candidates = np.flatnonzero((scores < SAME_SLICE) & (scores >= COPY_FLOOR))
    offset = 0 if within else int(pairs[:, 0].max(initial=-1)) + 1  # between two sets, b's images are others
    seen: dict[int, int] = {}
    chosen = np.zeros(len(pairs), bool)
    for k in candidates[np.argsort(-scores[candidates], kind="stable")]:
        ends = (int(pairs[k, 0]), int(pairs[k, 1]) + offset)
        chosen[k] = any(seen.get(e, 0) < COPY_CHECK_PER_IMAGE for e in ends)
        for e in ends:
            seen[e] = seen.get(e, 0) + 1
    return chosen


def scored_pairs(canon: np.ndarray, canon_b: np.ndarray | None = None, views: np.ndarray | None = None,
                 views_b: np.ndarray | None = None, threshold: float = SAME_OR_ADJACENT
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs and their scores, within one set of images or between two (i in a, j in b): the
    verified correlation of their canonical slices, then, with the copy views, the copy check
    (with_copy_check). Between two sets, both sets' copy views or neither."""
    within = canon_b is None
    if not within and (views is None) != (views_b is None):
        raise ValueError("scored_pairs between two sets needs the copy views of both or of neither")
    va = retrieval_vectors(canon)
    vb = None if within else retrieval_vectors(canon_b)
    st_a = stretched(canon)
    st_b = st_a if within else stretched(canon_b)
    sa = _unit_rows(_zoomed(st_a, 1.0, THUMB))[None]  # finds copies rescaled in one direction
    sb = None if within else _unit_rows(_zoomed(st_b, 1.0, THUMB))[None]
    pairs = np.unique(np.concatenate([candidate_pairs(va, vb), candidate_pairs(sa, sb)]), axis=0).reshape(-1, 2)
    hint = likely_zoom(va, va if within else vb, pairs)
    scores = verify(canon, canon if within else canon_b, pairs, hint, st_a, st_b)
    if views is None:
        return pairs, scores
    return with_copy_check(pairs, scores, views, None if within else views_b, threshold)


def with_copy_check(pairs: np.ndarray, scores: np.ndarray, views: np.ndarray, views_b: np.ndarray | None,
                    threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs with the copy views' own candidates added (never correlated: they start at -1), after the
    copy check of the open pairs, the weak pairs and the copy views' candidates (each image's nearest by
    keypoint_candidates and by turn_vectors), then of the mirrored candidates (mirrored_copies): a copy is
    raised to SAME_SLICE, a pair one picture under a similarity map only to JOIN_ALWAYS (copy_check); a weak
    pair (from `threshold` to below JOIN_ALWAYS) that one affine map explains fewer than SUPPORT_INLIERS
    keypoint matches of, or fewer than ALIGN_INLIERS with fewer than STILL_MATCHES matches that sit still
    (counted on keypoints spread over the picture, keypoint_support), falls below `threshold` (two slices of
    one scan share a skull and its place in the frame; another patient's slice at that level does not, and a
    handful of matches on one map is what chance gives two unrelated slices). `views_b` None: within one
    set."""
    within = views_b is None
    other = None if within else views_b
    features_a = copy_features(views)
    features_b = features_a if within else copy_features(other)
    by_keypoints = keypoint_candidates(features_a, None if within else features_b)
    turned = candidate_pairs(turn_vectors(views), None if within else turn_vectors(views_b), k=1, min_similarity=-1)
    proposed = np.unique(np.concatenate([by_keypoints, turned]), axis=0).reshape(-1, 2)
    pairs, scores = _with_pairs(pairs, scores, proposed, -1.0)
    weak = (scores >= threshold) & (scores < JOIN_ALWAYS)
    looked_at = open_pairs(pairs, scores, within) | _rows_in(pairs, proposed) | weak
    check = np.flatnonzero(looked_at & (scores < SAME_SLICE))  # a pair at SAME_SLICE is settled already
    _, copies, _, similar = copy_check(features_a, features_b, pairs[check])
    scores[check[copies]] = np.maximum(scores[check[copies]], SAME_SLICE)
    scores[check[similar]] = np.maximum(scores[check[similar]], JOIN_ALWAYS)
    judged = check[weak[check] & ~copies & ~similar]  # the weak pairs the copy check did not raise
    inliers, still = keypoint_support(views, other, pairs[judged])
    chance = (inliers < SUPPORT_INLIERS) | ((inliers < ALIGN_INLIERS) & (still < STILL_MATCHES))  # too few to count
    unsupported = judged[chance]
    scores[unsupported] = np.minimum(scores[unsupported], np.nextafter(np.float32(threshold), np.float32(-2)))
    settled = pairs[scores >= SAME_SLICE]
    mirrored, mirrored_similar = mirrored_copies(views, other, features_a, features_b, settled)
    pairs, scores = _raised(pairs, scores, mirrored, SAME_SLICE)
    return _raised(pairs, scores, mirrored_similar, JOIN_ALWAYS)


def _with_pairs(pairs: np.ndarray, scores: np.ndarray, more: np.ndarray, score: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """pairs and scores with the rows of `more` that pairs lacks appended at `score`."""
    added = more.reshape(-1, 2)[~_rows_in(more, pairs)]
    return (np.concatenate([pairs.reshape(-1, 2), added]).reshape(-1, 2),
            np.concatenate([scores, np.full(len(added), score, np.float32)]))


def _raised(pairs: np.ndarray, scores: np.ndarray, more: np.ndarray, score: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """pairs and scores with every row of `more` at `score` at least (appended where pairs lacks it)."""
    pairs, scores = _with_pairs(pairs, scores, more, score)
    at = _rows_in(pairs, more)
    scores[at] = np.maximum(scores[at], np.float32(score))
    return pairs, scores


def mirrored_copies(views: np.ndarray, views_b: np.ndarray | None, plain_a: list, plain_b: list,
                    settled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (M, 2) arrays of pairs (i in a, j in b; within a, i < j): those that are copies once one of the two
    is mirrored, and those that are one picture under a similarity map only (copy_check). A mirrored copy is
    one flipped left to right or top to bottom, and perhaps cropped, turned or stamped with text as well
    (ORB's descriptors do not survive a mirror, so neither the plain copy check nor the keypoint retrieval
    sees these; the turn-proof vectors do not survive a crop). Candidates: each image's nearest among the
    mirrored views of the others by keypoint_candidates (a top-to-bottom flip is a mirror turned by 180
    degrees, and ORB copes with turns), less the pairs `settled` already (at SAME_SLICE). Of each candidate,
    the image whose content key is the larger is mirrored, so the answer is the same whichever way round the
    pair comes. plain_a/b: copy_features of the views as they are."""
    within = views_b is None
    mirrored_b = copy_features(views if within else views_b, mirrored=True)
    candidates = keypoint_candidates(plain_a, mirrored_b, MIRROR_CANDIDATES, not_itself=within)
    if within:  # (i, mirrored j) and (j, mirrored i) are one candidate
        candidates = np.unique(np.sort(candidates, axis=1), axis=0).reshape(-1, 2)
    candidates = candidates[~_rows_in(candidates, settled)]
    if not len(candidates):
        return candidates, candidates
    mirror_b = np.array([plain_a[int(i)][3] < plain_b[int(j)][3] for i, j in candidates], bool)
    if within:
        mirrored_a = mirrored_b
    else:  # only the images of a that are mirrored (by index: copy_check looks them up)
        mirrored_a = _features_of(views, candidates[~mirror_b, 0], mirrored=True)
    copies, similar = np.zeros(len(candidates), bool), np.zeros(len(candidates), bool)
    for mirrored_side, first, second in ((~mirror_b, mirrored_a, plain_b), (mirror_b, plain_a, mirrored_b)):
        _, copies[mirrored_side], _, similar[mirrored_side] = copy_check(first, second, candidates[mirrored_side])
    return candidates[copies], candidates[similar]


def groups_from_pairs(n: int, pairs: np.ndarray, md5: list[str] | None = None) -> np.ndarray:
    """Group id per image (numbered by first appearance): connected components of the pairs and of equal MD5s."""
    edges = [pairs.reshape(-1, 2)]
    if md5 is not None:
        first: dict[str, int] = {}
        edges.append(np.array([(first.setdefault(d, i), i) for i, d in enumerate(md5)], np.int64).reshape(-1, 2))
    e = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first_seen: dict[int, int] = {}
    return np.array([first_seen.setdefault(g, len(first_seen)) for g in labels], np.int64)


@dataclass(frozen=True)
class Detector:
    """The near-duplicate settings of a run: method robust (canonical slices, verified correlation) or phash
    (the earlier detector, for comparison), the verified-score threshold and the pHash distance; and where the
    robust search keeps what it found (cache_dir: the same images, settings and code are searched once)."""

    method: str = "robust"
    threshold: float = SAME_OR_ADJACENT
    hash_distance: int = 4
    cache_dir: str | None = None

    @classmethod
    def of(cls, cfg) -> "Detector":
        return cls(cfg.near_duplicate_method, cfg.near_duplicate_threshold, cfg.hash_distance, cfg.cache_dir)

    def pairs(self, a, b=None) -> tuple[np.ndarray, np.ndarray]:
        """Near-duplicate pairs (i in a, j in b; i < j within a) of two datasets (anything with .canon,
        .copy_views and .images) and their scores; the exact-copy check (MD5) is separate."""
        if self.method == "phash":
            ha = hash_images(a.images)
            hb = None if b is None else hash_images(b.images)
            both = ha if hb is None else np.concatenate([ha, hb])
            pairs = phash_pairs(both, self.hash_distance)
            if hb is not None:
                pairs = pairs[(pairs[:, 0] < len(ha)) & (pairs[:, 1] >= len(ha))] - [0, len(ha)]
            scores = np.array([1 - bin(int(both[i]) ^ int(both[j])).count("1") / 64 for i, j in pairs], np.float32)
            return pairs, scores
        if a.copy_views is None or (b is not None and b.copy_views is None):
            raise ValueError("the robust near-duplicate detector needs the copy views (duplicates.copy_views)")
        search = functools.partial(self._robust_pairs, a, b)
        return _cached(Path(self.cache_dir), self._cache_key(a, b), search) if self.cache_dir else search()

    def _robust_pairs(self, a, b) -> tuple[np.ndarray, np.ndarray]:
        found, scores = scored_pairs(a.canon, None if b is None else b.canon, a.copy_views,
                                     None if b is None else b.copy_views, self.threshold)
        keep = scores >= self.threshold
        return found[keep], scores[keep]

    def _cache_key(self, a, b) -> str:
        """What the robust search's answer depends on: the images' canonical slices and copy views, the
        threshold, this module's code as imported and the libraries' versions (any change makes a new key)."""
        h = hashlib.blake2b(CODE_KEY.encode(), digest_size=12)
        h.update(f"{self.threshold}|{cv2.__version__}|{np.__version__}|{scipy.__version__}|{b is None}".encode())
        for ds in (a,) if b is None else (a, b):
            for array in (ds.canon, ds.copy_views):
                array = np.ascontiguousarray(array)
                h.update(f"{array.shape}|{array.dtype}".encode())
                h.update(array.data)
        return h.hexdigest()

    def same_slice(self, scores: np.ndarray) -> np.ndarray:
        """Which pairs the detector is sure show the same slice, or an adjacent slice of the same scan (on the
        labelled pairs, never another patient's); every pHash pair: it has no such notion."""
        return np.ones(len(scores), bool) if self.method == "phash" else scores >= SAME_SLICE


def _cached(folder: Path, key: str, search) -> tuple[np.ndarray, np.ndarray]:
    """search()'s (pairs, scores), kept in `folder` under `key`. A cache file that cannot be read is searched
    again and written anew; a cache that cannot be written costs the next run a search, never this one its
    answer. Written atomically (atomic.save_arrays): jobs sharing the folder never see half a file or take
    each other's."""
    path = folder / f"near-duplicates-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as kept:
                pairs, scores = kept["pairs"], kept["scores"]
            log.info("near-duplicate pairs read from the cache (%s)", path)
            return pairs, scores
        except Exception as err:  # noqa: BLE001 - whatever is wrong with a cache file, searching again mends it
            log.warning("near-duplicate cache %s cannot be read (%s): searching again", path, err)
    pairs, scores = search()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_arrays(path, pairs=pairs, scores=scores)
    except OSError as err:
        log.warning("near-duplicate pairs not cached in %s (%s)", folder, err)
    return pairs, scores


def joining_pairs(pairs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The near-duplicate pairs that join groups: every pair from JOIN_ALWAYS on (copies, the same slice, and
    pairs the copy check's similarity map aligns), and, between the groups those make, a weaker pair only when
    it is one group's best link to any other group. Chaining every pair over the threshold ran through
    generic-looking slices and joined different patients into groups of 200 (measured on the real data:
    docs/method.md, near-duplicates)."""
    pairs = pairs.reshape(-1, 2)
    strong = scores >= JOIN_ALWAYS
    if not len(pairs) or strong.all():
        return pairs
    comp = groups_from_pairs(int(pairs.max()) + 1, pairs[strong])[pairs]  # (P, 2) group of each end
    weak = np.flatnonzero(~strong & (comp[:, 0] != comp[:, 1]))
    best: dict[int, tuple[float, int]] = {}  # group -> (score, pair index) of its best link
    for k in weak:
        for g in comp[k]:
            if scores[k] > best.get(int(g), (-2.0, -1))[0]:
                best[int(g)] = (float(scores[k]), int(k))
    chosen = sorted({k for _, k in best.values()})
    return np.concatenate([pairs[strong], pairs[chosen]])


def group_images(ds, detector: Detector = Detector()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group id per image (exact copies and near-duplicates, see joining_pairs), with the near-duplicate pairs
    and their scores."""
    pairs, scores = detector.pairs(ds)
    joined = pairs if detector.method == "phash" else joining_pairs(pairs, scores)
    return groups_from_pairs(len(ds.md5), joined, ds.md5), pairs, scores


def group_with_sources(groups_of_originals: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Group ids for a folder with augmented copies: the originals (sources == -1) keep the groups they have
    without the copies; each copy joins its source's group (a copy whose source is missing gets its own)."""
    orig = np.flatnonzero(sources == -1)
    groups = np.empty(len(sources), np.int64)
    groups[orig] = groups_of_originals
    copies = np.flatnonzero(sources != -1)
    groups[copies] = np.where(sources[copies] >= 0, groups[np.maximum(sources[copies], 0)],
                              groups[orig].max(initial=-1) + 1 + np.arange(len(copies)))
    return groups


def copies_in(train, test, detector: Detector = Detector()) -> np.ndarray:
    """Whether each image of `test` is an exact copy or a near-duplicate of some image of `train`."""
    flags = np.isin(np.asarray(test.md5, dtype=object), np.asarray(train.md5, dtype=object))
    if len(train.md5) and len(test.md5):
        pairs, _ = detector.pairs(test, train)
        flags[pairs[:, 0]] = True
    return flags

# The earlier detector, kept for comparison (config near_duplicate_method: phash; the pair benchmark's
# "old" column): a 64-bit DCT hash of the resized image, near-duplicates within hash_distance bits. It misses
# re-cropped copies (distance 6-12) and joins different patients at distance <= 4.

def phash(image: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of an image (any size, RGB or grey)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def hash_images(images) -> np.ndarray:
    return np.array([phash(im) for im in images], dtype=np.uint64)


def phash_pairs(hashes: np.ndarray, distance: int) -> np.ndarray:
    """(M, 2) pairs (i < j) whose hashes differ in at most `distance` bits. The hash is cut into distance + 1
    bands: two hashes that close agree exactly on at least one band (pigeonhole), so only images sharing a
    band value are compared."""
    edges = [int(e) for e in np.linspace(0, 64, distance + 2)]
    as_int = [int(h) for h in hashes]
    pairs = set()
    for lo, hi in zip(edges[:-1], edges[1:]):
        buckets: dict[int, list[int]] = {}
        for i, h in enumerate(as_int):
            buckets.setdefault((h >> lo) & ((1 << (hi - lo)) - 1), []).append(i)
        for members in buckets.values():
            for a, i in enumerate(members):
                for j in members[a + 1:]:
                    if bin(as_int[i] ^ as_int[j]).count("1") <= distance:
                        pairs.add((i, j))
    return np.array(sorted(pairs), np.int64).reshape(-1, 2)
