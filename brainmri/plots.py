"""Every figure of the project, in one shared style: readable at report size, prints in grey."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
from sklearn.metrics import auc, average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, \
    roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
    import seaborn as sns  # (imports pandas: loaded only for this figure)

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


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heatmap (0-1, image size) blended over the image as RGB uint8 (jet colour map, as is usual)."""
    coloured = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (image * (1 - alpha) + coloured * alpha).astype(np.uint8)


def cam_panel(image, heats: list, titles: list[str], path: Path, formats=FORMATS) -> list[Path]:
    """One image: the slice, then heatmap and overlay for each class asked for."""
    cols = 1 + 2 * len(heats)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, cols, figsize=(2.6 * cols, 2.9))
        axes[0].imshow(image)
        axes[0].set_title("slice")
        for k, (heat, title) in enumerate(zip(heats, titles)):
            axes[1 + 2 * k].imshow(heat, cmap="jet", vmin=0, vmax=1)
            axes[1 + 2 * k].set_title(f"map: {title}", fontsize=9)
            axes[2 + 2 * k].imshow(overlay(image, heat))
            axes[2 + 2 * k].set_title("overlay", fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        return save(fig, path, formats)


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
