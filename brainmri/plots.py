"""Every figure of the project, in one shared style: readable at report size, prints in grey."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
