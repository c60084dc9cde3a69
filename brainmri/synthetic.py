"""A synthetic MRI-like dataset for demos and tests: head, skull, brain, noise, and a lesion per tumor class.

Every image comes with a lesion mask (for scoring Grad-CAM) and a plane label, and a few images are
saved twice with small changes so that near-duplicate handling has something to find.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from .config import PLANES, STUDY_CLASSES
from .data import decode
DUPLICATE_EVERY = 20  # one image in twenty gets a near-duplicate copy (brightness shift, JPEG)


def _head(rng: np.random.Generator, size: int, plane: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw skull and brain for one plane; return the image (float 0-1) and the brain mask."""
    img = np.zeros((size, size), np.float32)
    c = size // 2
    ax = {"axial": (0.36, 0.43), "sagittal": (0.42, 0.36), "coronal": (0.38, 0.40)}[plane]
    axes = (int(size * ax[0] * rng.uniform(0.93, 1.05)), int(size * ax[1] * rng.uniform(0.93, 1.05)))
    centre = (c + int(rng.integers(-3, 4)), c + int(rng.integers(-3, 4)))
    cv2.ellipse(img, centre, (axes[0] + size // 22, axes[1] + size // 22), 0, 0, 360, 0.95, -1)  # scalp+skull
    cv2.ellipse(img, centre, (axes[0] + size // 60, axes[1] + size // 60), 0, 0, 360, 0.15, -1)  # CSF gap
    brain = np.zeros_like(img)
    cv2.ellipse(brain, centre, axes, 0, 0, 360, 1.0, -1)
    if plane == "sagittal":  # cerebellum and brainstem below the cerebrum
        cv2.ellipse(brain, (centre[0] + axes[0] // 3, centre[1] + axes[1] * 3 // 4), (axes[0] // 3, axes[1] // 4), 0, 0, 360, 1.0, -1)
    if plane == "coronal":  # temporal lobes and the midline fissure
        cv2.line(brain, (centre[0], centre[1] - axes[1]), (centre[0], centre[1] - axes[1] // 3), 0.0, max(1, size // 80))
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 40)
    tissue = 0.55 + 0.12 * texture / (np.abs(texture).max() + 1e-6)
    if plane == "axial":  # lateral ventricles: two dark crescents
        for dx in (-1, 1):
            cv2.ellipse(tissue, (centre[0] + dx * size // 14, centre[1] - size // 40), (size // 28, size // 9), 0, 0, 360, 0.2, -1)
    img = np.where(brain > 0, tissue, img)
    return img, brain > 0


def _lesion(rng: np.random.Generator, size: int, label: str, brain: np.ndarray, plane: str) -> np.ndarray:
    """Draw the class's lesion as a float mask (0-1 intensity), empty for no_tumor."""
    mask = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(brain)
    cy, cx = int(ys.mean()), int(xs.mean())
    if label == "glioma_tumor":  # irregular intra-parenchymal mass
        r = int(size * rng.uniform(0.07, 0.11))
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.1, 0.22) * size
        px, py = int(cx + dist * np.cos(ang)), int(cy + dist * np.sin(ang))
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        radii = r * rng.uniform(0.6, 1.3, t.size)
        pts = np.stack([px + radii * np.cos(t), py + radii * np.sin(t)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1.0)
    elif label == "meningioma_tumor":  # round, well-bounded, on the dura at the brain's edge
        edge = cv2.morphologyEx(brain.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        eys, exs = np.nonzero(edge)
        upper = eys < cy + size * 0.1  # keep it off the skull base
        i = rng.choice(np.nonzero(upper)[0])
        r = int(size * rng.uniform(0.06, 0.09))
        px, py = int(exs[i] + (cx - exs[i]) * r / max(1, abs(cx - exs[i]) + abs(cy - eys[i])) * 0.8), int(eys[i])
        cv2.circle(mask, (px, py), r, 1.0, -1)
    elif label == "pituitary_tumor":  # small midline mass at the sella
        r = int(size * rng.uniform(0.04, 0.055))
        offset = {"axial": 0.05, "sagittal": 0.2, "coronal": 0.22}[plane]
        cv2.circle(mask, (cx + int(rng.integers(-2, 3)), int(cy + offset * size)), r, 1.0, -1)
    return mask * brain


def synth_image(seed: int, label: str, plane: str, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic slice: uint8 grey image and uint8 lesion mask (255 inside the lesion)."""
    rng = np.random.default_rng(seed)
    img, brain = _head(rng, size, plane)
    lesion = _lesion(rng, size, label, brain, plane)
    if label == "glioma_tumor":  # edema: a diffuse bright halo around the mass
        halo = cv2.GaussianBlur(lesion, (0, 0), size / 30) * brain
        img = img + 0.25 * halo / (halo.max() + 1e-6)
    img = np.where(lesion > 0, 0.9 + 0.05 * rng.normal(size=img.shape), img)
    img = img + rng.normal(0, 0.04, img.shape)  # scanner noise
    img = np.clip(img * rng.uniform(0.85, 1.1), 0, 1)
    return (img * 255).astype(np.uint8), (lesion > 0).astype(np.uint8) * 255


def write_synthetic(root: str | Path, per_class: int = 150, size: int = 128, seed: int = 0,
                    test_fraction: float = 0.1) -> Path:
    """Write Training/ and Testing/ class folders, masks/ beside them and planes.csv; return root."""
    root = Path(root)
    rows = []
    for ci, label in enumerate(STUDY_CLASSES):
        for i in range(per_class):
            subset = "Testing" if i < round(per_class * test_fraction) else "Training"
            plane = PLANES[i % 3]
            img, mask = synth_image(seed * 1_000_003 + ci * 100_003 + i, label, plane, size)
            name = f"{label[:2]}_{i:04d}"
            rows += _save(root, subset, label, name, img, mask, plane)
            if i % DUPLICATE_EVERY == 7:  # a near-duplicate: brighter, JPEG-recompressed copy
                copy = np.clip(img.astype(np.int16) + 6, 0, 255).astype(np.uint8)
                rows += _save(root, subset, label, name + "_copy", copy, mask, plane, ext=".jpg")
    with open(root / "planes.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "plane"), *rows])
    return root


def _save(root, subset, label, name, img, mask, plane, ext=".png") -> list[tuple[str, str]]:
    rel = Path(subset) / label / f"{name}{ext}"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / "masks" / subset / label).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), img)
    cv2.imwrite(str(root / "masks" / subset / label / f"{name}.png"), mask)
    return [(rel.as_posix(), plane)]


def mask_path(root: str | Path, image_path: str | Path) -> Path:
    """The lesion mask that belongs to a synthetic image (copies share their source's mask)."""
    p = Path(image_path).relative_to(root)
    return Path(root) / "masks" / p.parent / (p.stem.removesuffix("_copy") + ".png")


def lesion_mask(root, path, size: int) -> np.ndarray | None:
    """The lesion mask of a synthetic image (`path` under `root`) at size x size; None where the data has
    none (no root, an image outside it, or real data without masks/)."""
    if root is None:
        return None
    try:
        mask = mask_path(root, Path(root) / path)
    except ValueError:  # an image outside the data root
        return None
    if not mask.is_file():
        return None
    return cv2.resize(decode(mask)[..., 0], (size, size), interpolation=cv2.INTER_NEAREST)
