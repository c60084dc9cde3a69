"""Every figure of the project, in one shared style: readable at report size, prints in grey."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from sklearn.metrics import auc, average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, \
    roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import TextPath  # noqa: E402

STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
         "figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight", "axes.grid": True, "grid.alpha": 0.3}
FORMATS = ("png",)  # add "pdf" for vector figures in a paper


def save(fig, path: Path, formats=FORMATS) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        out.append(path.with_suffix(f".{ext}"))
        fig.savefig(out[-1])
    plt.close(fig)
    return out


def training_curves(histories: dict[int, list[dict]], folder: Path, formats=FORMATS) -> list[Path]:
    """Accuracy/loss and precision/recall vs epoch: thin lines per fold, a thick mean, train dashed."""
    panels = [("accuracy", "Accuracy"), ("loss", "Loss"), ("precision", "Macro precision"), ("recall", "Macro recall")]
    out = []
    with plt.rc_context(STYLE):
        for group in (panels[:2], panels[2:]):
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
            for ax, (key, title) in zip(axes, group):
                _curve_panel(ax, histories, key, title)
            name = "curves_" + "_".join(k for k, _ in group)
            out += save(fig, folder / name, formats)
    return out


def _curve_panel(ax, histories, key, title) -> None:
    for split, style in (("", "--"), ("val_", "-")):
        runs = [[r[split + key] for r in h] for h in histories.values() if h and split + key in h[0]]
        for values in runs:
            ax.plot(range(1, len(values) + 1), values, style, color="0.6", lw=0.8)
        if runs:
            n = min(map(len, runs))
            mean = np.mean([v[:n] for v in runs], axis=0)
            ax.plot(range(1, n + 1), mean, style, color="black", lw=2,
                    label=f"{'validation' if split else 'train'} (mean of {len(runs)} folds)")
    ax.set(title=title, xlabel="Epoch")
    ax.legend()


def near_duplicate_examples(ds, pairs: np.ndarray, scores: np.ndarray, path: Path, per_row: int = 4, seed: int = 0,
                            formats=FORMATS) -> list[Path]:
    """Sampled near-duplicate pairs per band of verified score (byte-identical ones left out): what the
    threshold joins, to check by eye."""
    bands = [(0.95, 1.01), (0.9, 0.95), (0.8, 0.9), (float(scores.min(initial=0.8)), 0.8)]
    distinct = np.array([ds.md5[i] != ds.md5[j] for i, j in pairs], bool)
    rng = np.random.default_rng(seed)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(bands), per_row, figsize=(2.6 * per_row, 1.6 * len(bands)), squeeze=False)
        for row, (lo, hi) in zip(axes, bands):
            members = np.flatnonzero(distinct & (scores >= lo) & (scores < hi))
            picks = rng.choice(members, min(per_row, len(members)), replace=False) if len(members) else []
            for ax, k in zip(row, list(picks) + [None] * per_row):
                ax.axis("off")
                if k is None:
                    continue
                i, j = pairs[k]
                ax.imshow(np.hstack([ds.images[i], ds.images[j]]), cmap="gray")
                ax.set_title(f"{scores[k]:.2f}: {short(ds.classes[ds.labels[i]])} / {short(ds.classes[ds.labels[j]])}",
                             fontsize=8)
            row[0].text(-0.05, 0.5, f"score {lo:.2f}-{min(hi, 1):.2f}\n{len(members)} pairs", transform=row[0].transAxes,
                        ha="right", va="center", fontsize=9)
        fig.suptitle("Near-duplicate pairs by verified similarity (byte-identical copies left out)")
        return save(fig, path, formats)


def label_conflicts(ds, rows: list[dict], path: Path, limit: int = 24, formats=FORMATS) -> list[Path]:
    """Each same-slice pair with two labels side by side, paths and labels under it: confirm in seconds."""
    index = {p: i for i, p in enumerate(ds.paths)}
    shown = rows[:limit]
    cols = 2
    nrows = (len(shown) + cols - 1) // cols
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, cols, figsize=(10, 3.4 * nrows), squeeze=False, constrained_layout=True)
        for ax in axes.flat:
            ax.axis("off")
        for ax, r in zip(axes.flat, shown):
            ax.imshow(np.hstack([ds.images[index[r["a"]]], ds.images[index[r["b"]]]]), cmap="gray")
            ax.set_title(f"{pretty(r['label_a'])}  |  {pretty(r['label_b'])}\n{r['a']}\n{r['b']}\n"
                         f"{r['evidence']}, score {r['score']:.2f}", fontsize=8)
        more = f" ({len(shown)} of {len(rows)} shown; all in audit.json)" if len(rows) > len(shown) else ""
        fig.suptitle(f"Label conflicts: the same slice filed under two classes{more}")
        return save(fig, path, formats)


def short(name: str) -> str:
    """'meningioma_tumor' -> 'meningioma', 'no_tumor' -> 'no tumor': captions under small images."""
    return name.replace("_", " ") if name.startswith("no_") else name.removesuffix("_tumor")


def pretty(name: str) -> str:
    """'meningioma_tumor' -> 'Meningioma tumor' for axis labels."""
    return name.replace("_", " ").capitalize()


def confusion_matrices(labels, pred, classes, path: Path, title: str, formats=FORMATS) -> list[Path]:
    """Counts and row-normalised confusion matrices side by side (seaborn heatmaps, grey scale)."""
    import seaborn as sns  # (it imports pandas: loaded for this figure only)

    counts = confusion_matrix(labels, pred, labels=list(range(len(classes))))
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    names = [pretty(c) for c in classes]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
        for ax, data, fmt, sub in ((axes[0], counts, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
            sns.heatmap(data, annot=True, fmt=fmt, cmap="Greys", cbar=False, square=True, ax=ax,
                        xticklabels=names, yticklabels=names, linewidths=0.5, linecolor="0.8",
                        vmin=0, vmax=data.max() if fmt == "d" else 1)
            ax.set(xlabel="Predicted class", ylabel="True class", title=sub)
            plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
            ax.tick_params(axis="y", rotation=0)
        fig.suptitle(title)
        fig.tight_layout()
        return save(fig, path, formats)


def roc_pr_curves(labels, probs, classes, path: Path, title: str, formats=FORMATS) -> list[Path]:
    """One-vs-all ROC (with AUC, micro and macro averages) and precision-recall (with AP) curves."""
    onehot = np.eye(len(classes))[labels]
    present = [c for c in range(len(classes)) if 0 < onehot[:, c].sum() < len(labels)]
    styles = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    with plt.rc_context(STYLE):
        fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
        grid = np.linspace(0, 1, 201)
        tprs = []
        for k, c in enumerate(present):
            fpr, tpr, _ = roc_curve(onehot[:, c], probs[:, c])
            tprs.append(np.interp(grid, fpr, tpr))
            roc_ax.plot(fpr, tpr, ls=styles[k % 6], label=f"{pretty(classes[c])} (AUC {auc(fpr, tpr):.3f})")
            prec, rec, _ = precision_recall_curve(onehot[:, c], probs[:, c])
            ap = average_precision_score(onehot[:, c], probs[:, c])
            pr_ax.plot(rec, prec, ls=styles[k % 6], label=f"{pretty(classes[c])} (AP {ap:.3f})")
        if present:
            fpr, tpr, _ = roc_curve(onehot[:, present].ravel(), probs[:, present].ravel())
            roc_ax.plot(fpr, tpr, color="black", lw=2, label=f"micro average (AUC {auc(fpr, tpr):.3f})")
            roc_ax.plot(grid, np.mean(tprs, 0), color="0.4", lw=2, label=f"macro average (AUC {auc(grid, np.mean(tprs, 0)):.3f})")
        roc_ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        roc_ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC, one vs all")
        pr_ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall, one vs all", ylim=(0, 1.02))
        roc_ax.legend(loc="lower right")
        pr_ax.legend(loc="lower left")
        fig.suptitle(title)
        fig.tight_layout()
        return save(fig, path, formats)


def reliability_diagram(calib: dict, path: Path, title: str, formats=FORMATS) -> list[Path]:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.8, 4.6))
        for b in calib["bins"]:
            lo, hi = b["bin"]
            ax.bar(lo, b["accuracy"], width=hi - lo, align="edge", color="0.55", edgecolor="black")
        ax.plot([0, 1], [0, 1], "--", color="black", lw=1, label="perfect calibration")
        ax.set(xlabel="Confidence (top class)", ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1),
               title=f"{title}\nECE {calib['ece']:.3f}")
        ax.legend(loc="upper left")
        return save(fig, path, formats)


def image_gallery(images, captions, path: Path, title: str, cols: int = 6, formats=FORMATS) -> list[Path]:
    """A grid of images with a caption under each (misclassified images, label-error candidates)."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.6 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img, cap in zip(axes.flat, images, captions):
            ax.imshow(img, cmap="gray")
            ax.set_title(cap, fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        return save(fig, path, formats)


CAM_CMAP = "inferno"  # perceptually uniform and monotonic in lightness, so the map still reads in grey print
CAM_FLOOR = 0.2  # map values at or below this are not drawn: a slice the model barely used keeps its grey look
CAM_ALPHA = 0.8  # opacity at the map's maximum; it falls to 0 at CAM_FLOOR (as a square root, so mid values show)
OUTLINE = "#00e5ff"  # lesion outline: a cyan that inferno never produces
FLAGGED = "#ffd8a8"  # the shade behind a misclassified image's caption: pale orange, light grey in print
REPORT_WIDTH = 6.3  # inches: the text width of an A4/letter report, so the fonts below print at their size
CAM_SCALING = ("Each map is the ReLU of the class-weighted feature maps, divided by its own maximum (1 = the "
               "strongest evidence in that image, so shades compare within an image, not between images), "
               "then bilinearly upsampled to the slice. Values below {floor:g} are not drawn, so an image "
               "without positive evidence stays grey.")


def _rgb(image: np.ndarray) -> np.ndarray:
    """A grey or RGB image as H x W x 3."""
    image = np.asarray(image)
    return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = CAM_ALPHA, floor: float = CAM_FLOOR,
            cmap: str = CAM_CMAP) -> np.ndarray:
    """The heatmap (0-1, image size) over the image as RGB uint8, the more opaque the higher the map is above
    `floor` (`alpha` at 1): where the map is weak the slice stays exactly as it was."""
    heat = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0, 1)
    colours = plt.get_cmap(cmap)(heat)[..., :3] * 255
    weight = alpha * np.sqrt(np.clip((heat - floor) / (1 - floor), 0, 1))[..., None]
    base = _rgb(image).astype(np.float32)
    return np.round(base * (1 - weight) + colours * weight).astype(np.uint8)


def _shown_colours(alpha: float = CAM_ALPHA, floor: float = CAM_FLOOR, grey: int = 128):
    """The colour map as the overlay really draws it over mid-grey tissue: what the colour bar shows."""
    ramp = np.linspace(0, 1, 256)[None, :]
    return ListedColormap(overlay(np.full((1, 256), grey, np.uint8), ramp, alpha, floor)[0] / 255)


def _colour_bar(fig, rect: list[float], floor: float = CAM_FLOOR) -> None:
    """A horizontal 0-1 colour bar of the overlay (as drawn over mid-grey), the floor ticked."""
    cax = fig.add_axes(rect, label="<colorbar>")  # the label matplotlib gives the colour bars it places itself
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), _shown_colours(floor=floor)), cax=cax,
                       orientation="horizontal", ticks=[0, floor, 0.5, 1])
    bar.set_label("map value (0 = no evidence, 1 = the image's maximum)", fontsize=8, labelpad=2)
    bar.ax.tick_params(labelsize=8, length=2, pad=1)
    bar.outline.set_linewidth(0.5)


def _draw_slice(ax, image, heat=None, mask=None) -> None:
    """One slice, its overlay when a map is given, the lesion outline when a mask is."""
    ax.imshow(_rgb(image) if heat is None else overlay(image, heat), interpolation="nearest")
    if mask is not None and np.any(mask):
        halo = [patheffects.withStroke(linewidth=1.9, foreground="black")]  # keeps it visible on yellow, in grey
        ax.contour(np.asarray(mask) > 0, levels=[0.5], colors=OUTLINE, linewidths=0.8, path_effects=halo)
    ax.set_axis_off()


def _text_width(text: str, size: float, weight: str = "normal") -> float:
    """Inches taken by the widest line of `text` at `size` points (DejaVu Sans, matplotlib's default)."""
    font = FontProperties(weight=weight)
    widths = [TextPath((0, 0), line or " ", size=size, prop=font).get_extents().width for line in text.split("\n")]
    return max(widths) / 72


class _Page:
    """A figure at report width laid out top-down in inches, so text sizes are the printed sizes."""

    def __init__(self, height: float):
        self.fig, self.height = plt.figure(figsize=(REPORT_WIDTH, height)), height

    def rect(self, x: float, top: float, w: float, h: float) -> list[float]:
        """Figure fractions of a box `top` inches below the figure's top edge."""
        return [x / REPORT_WIDTH, 1 - (top + h) / self.height, w / REPORT_WIDTH, h / self.height]

    def text(self, x: float, top: float, s: str, **kw):
        return self.fig.text(x / REPORT_WIDTH, 1 - top / self.height, s, va="top", **kw)


HEADER_H = 0.62  # inches: the title and its smaller line
FOOTER_H = 1.15  # inches: the colour bar with its label, then the scaling statement


def _header(page: _Page, title: str, subtitle: str | None) -> None:
    """The title in words (shrunk to fit the width), the method and layer in a smaller grey line under it."""
    size = min(12.0, 12 * (REPORT_WIDTH - 0.2) / _text_width(title, 12, "bold"))
    page.text(REPORT_WIDTH / 2, 0.05, title, ha="center", fontsize=size, weight="bold")
    if subtitle:
        page.text(REPORT_WIDTH / 2, 0.33, subtitle, ha="center", fontsize=8.5, color="0.3")


def _footer(page: _Page, top: float, bar_x: float, bar_w: float, note: str) -> None:
    """The colour bar, then the statement of how the maps are scaled, wrapped to the figure's width."""
    _colour_bar(page.fig, page.rect(bar_x, top + 0.12, bar_w, 0.09))
    page.text(0.1, top + 0.56, textwrap.fill(note, 108), ha="left", fontsize=7.5, color="0.2", linespacing=1.3)


def _note(note: str, outlined: bool, flagged: bool = False) -> str:
    """The footnote: how the maps are scaled, then what the outline, the shading and the bar mean."""
    return (note.format(floor=CAM_FLOOR) + (" Cyan line: the lesion's outline (mask)." if outlined else "")
            + (" Shaded caption: misclassified." if flagged else "")
            + " The bar shows the colours as drawn over mid-grey.")


def cam_panel(image, heats: list, titles: list[str], path: Path, formats=FORMATS, *, title: str | None = None,
              subtitle: str | None = None, mask=None, note: str = CAM_SCALING) -> list[Path]:
    """One image: the slice, then its overlay for each class asked for (`titles` over them), the title in words,
    a colour bar and how the maps are scaled; the lesion outlined where `mask` is given."""
    cols, gap = 1 + len(heats), 0.12
    cell = min(2.4, (REPORT_WIDTH - 0.2 - gap * (cols - 1)) / cols)
    left = (REPORT_WIDTH - cols * cell - (cols - 1) * gap) / 2
    axes_top = HEADER_H + 0.25  # room for the titles over the images
    with plt.rc_context(STYLE):
        page = _Page(axes_top + cell + FOOTER_H)
        for k, (heat, label) in enumerate([(None, "slice"), *zip(heats, titles)]):
            ax = page.fig.add_axes(page.rect(left + k * (cell + gap), axes_top, cell, cell))
            _draw_slice(ax, image, heat, mask)
            ax.set_title(label, fontsize=9, pad=3)
        _header(page, title or "Where the model looked", subtitle)
        overlays_x = left + cell + gap  # the bar sits under the overlays, which it explains
        _footer(page, axes_top + cell, overlays_x + 0.1, REPORT_WIDTH - overlays_x - left - 0.2,
                _note(note, mask is not None and np.any(mask)))
        return save(page.fig, path, formats)


def cam_grid(images, heats, captions: list[str], path: Path, title: str, subtitle: str | None = None,
             masks=None, total: int | None = None, flagged=None, cols: int = 6, limit: int = 24, formats=FORMATS,
             note: str = CAM_SCALING) -> list[Path]:
    """Overlays in a grid at report width with a caption under each (shaded where `flagged`), one colour bar and
    how the maps are scaled; says 'N of M images shown' when cut (M: `total`, default all given); lesions
    outlined where masks exist."""
    n, total, gap = min(len(images), limit), total or len(images), 0.06
    masks = list(masks) if masks is not None else [None] * n
    flagged = list(flagged) if flagged is not None else [False] * n
    widest = max((_text_width(c, 7) for c in captions[:n]), default=0)
    cols = max(1, min(cols, int((REPORT_WIDTH - 0.2 + gap) / (widest + 0.08 + gap))))  # captions must not touch
    if n < len(images) and n > cols:  # cut anyway: cut at a full row
        n -= n % cols
    rows, cell = max(1, -(-n // cols)), (REPORT_WIDTH - 0.2 - gap * (cols - 1)) / cols
    row_h = cell + 0.1 + max((c.count("\n") + 1 for c in captions[:n]), default=1) * 0.14
    if n < total:
        subtitle = f"{subtitle + ' · ' if subtitle else ''}{n} of {total} images shown"
    with plt.rc_context(STYLE):
        page = _Page(HEADER_H + rows * row_h + FOOTER_H)
        for k in range(n):
            r, c = divmod(k, cols)
            ax = page.fig.add_axes(page.rect(0.1 + c * (cell + gap), HEADER_H + r * row_h, cell, cell))
            _draw_slice(ax, images[k], heats[k], masks[k])
            ax.text(0.5, -0.03, captions[k], transform=ax.transAxes, ha="center", va="top", fontsize=7,
                    linespacing=1.15, bbox=dict(fc=FLAGGED, ec="none", pad=1) if flagged[k] else None)
        _header(page, title, subtitle)
        outlined = any(m is not None and np.any(m) for m in masks[:n])
        _footer(page, HEADER_H + rows * row_h, REPORT_WIDTH * 0.2, REPORT_WIDTH * 0.6,
                _note(note, outlined, any(flagged[:n])))
        return save(page.fig, path, formats)


def deletion_curves(fractions, curves: dict[str, tuple], path: Path, formats=FORMATS) -> list[Path]:
    """Class probability as pixels are deleted in each order: {name: (curve, area)}, area in the legend."""
    styles = ["-", "--", ":"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5, 3.8))
        for (name, (curve, a)), ls in zip(curves.items(), styles):
            ax.plot(fractions, curve, ls, color="black", label=f"{name} (area {a:.3f})")
        ax.set(xlabel="Fraction of pixels deleted", ylabel="Probability of the predicted class",
               title="Deletion curve (lower area: more faithful)", ylim=(0, 1.02))
        ax.legend()
        return save(fig, path, formats)


def comparison(rows: list[dict], curves: dict[str, np.ndarray], folder: Path, formats=FORMATS) -> list[Path]:
    """Three figures of a comparison: validation accuracy vs epoch (mean of folds) per variant, accuracy with
    fold std as error bars (and test accuracy), and accuracy against trainable parameters."""
    out = []
    names = [r["variant"] for r in rows]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, curve in curves.items():
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
        ax.set(title="Validation accuracy (mean of folds)", xlabel="Epoch", ylabel="Accuracy")
        ax.legend()
        out += save(fig, folder / "accuracy_vs_epoch", formats)

        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 4))
        x = np.arange(len(rows))
        ax.bar(x, [r["val_accuracy_mean"] for r in rows], yerr=[r["val_accuracy_std"] for r in rows], capsize=4,
               color="0.7", edgecolor="black", label="validation, best epoch (selection, optimistic)")
        ax.plot(x, [r["test_accuracy_mean"] for r in rows], "kD", label="test (mean of folds)")
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.set(title="Accuracy by variant", ylabel="Accuracy", ylim=(0, 1))
        ax.legend(loc="lower right")
        out += save(fig, folder / "accuracy_bars", formats)

        fig, ax = plt.subplots(figsize=(6, 4))
        basis = rows[0].get("comparison_basis", "val_accuracy")  # what the comparison rests on, not the selection
        for r in rows:
            ax.errorbar(r["params_trainable"], r[f"{basis}_mean"], yerr=r.get(f"{basis}_std"), fmt="o", capsize=3,
                        color="black")
            ax.annotate(r["variant"], (r["params_trainable"], r[f"{basis}_mean"]), textcoords="offset points",
                        xytext=(5, 5), fontsize=9)
        ax.set_xscale("log")
        title = {"test_accuracy": "Test", "last_epoch_val_accuracy": "Last-epoch validation"}.get(basis, "Validation")
        ax.set(title=f"{title} accuracy vs trainable parameters", xlabel="Trainable parameters (log)",
               ylabel="Accuracy")
        out += save(fig, folder / "accuracy_vs_parameters", formats)
    return out


def binary_roc(labels, p_tumor, threshold: float, path: Path, title: str, formats=FORMATS) -> list[Path]:
    """ROC curve of P(tumor) with the operating point of the validation-chosen threshold."""
    fpr, tpr, _ = roc_curve(labels, p_tumor)
    pred = np.asarray(p_tumor) >= threshold
    labels = np.asarray(labels)
    sens, spec = pred[labels == 1].mean(), (~pred[labels == 0]).mean()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        ax.plot(fpr, tpr, color="black", label=f"AUC {roc_auc_score(labels, p_tumor):.3f}")
        ax.plot([0, 1], [0, 1], ":", color="0.5")
        ax.plot(1 - spec, sens, "o", color="black", mfc="white", ms=8,
                label=f"threshold {threshold:.2f}: sens {sens:.2f}, spec {spec:.2f}")
        ax.set(title=title, xlabel="1 - specificity", ylabel="Sensitivity", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right")
        return save(fig, path, formats)
