"""Comparison of variants (backbones, optimizers, remedies) trained on the same folds (compare_backbones.py):
plans (configs/plans/), training each variant, then one table, paired fold-by-fold tests against a reference,
and figures."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from . import pipeline, runs
from .config import PLAN_KEYS, Config, load_config, merge, parse_overrides, read_yaml
from .errors import UserError
from .predictions import read_predictions
from .runs import run_classes
from .splits import TRAIN, VAL, read_splits

log = logging.getLogger("brainmri")


def load_plan(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Config], str]:
    """A comparison plan: a base config, settings for all, and named variants; returns their configs and
    the reference variant. Command-line overrides apply to every variant, below the variant's own settings
    (which are what the comparison is about)."""
    plan = read_yaml(path)
    if plan and not set(plan) & PLAN_KEYS and set(plan) <= set(Config().to_dict()):
        raise UserError(f"{path} is a run config, not a comparison plan: train it with python train.py --config {path}")
    unknown = sorted(set(plan) - PLAN_KEYS)
    if unknown:
        raise UserError(f"unknown key(s) {unknown} in {path} (known: {', '.join(sorted(PLAN_KEYS))})")
    variants = plan.get("variants")
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise UserError(f"{path}: 'variants' must map names to config settings, e.g. b0: {{backbone: efficientnetb0}}")
    base = merge(load_config(plan.get("base")), plan.get("set") or {}, f"{path}: set")
    configs = {}
    for name, settings in variants.items():
        cfg = merge(base, parse_overrides(overrides), "command-line overrides")
        cfg = merge(cfg, settings, f"{path}: variants.{name}")
        configs[name] = merge(cfg, {"experiment": str(name)}, "")
    reference = plan.get("reference", next(iter(variants)))
    if reference not in configs:
        raise UserError(f"{path}: reference '{reference}' is not one of the variants ({', '.join(configs)})")
    return configs, reference


def only_variants(configs: dict[str, Config], only: list[str], reference: str) -> dict[str, Config]:
    """The named variants and the reference (always run: the others are compared with it)."""
    unknown = sorted(set(only) - set(configs))
    if unknown:
        raise UserError(f"--only: unknown variant(s) {unknown} (known: {', '.join(configs)})")
    return {k: v for k, v in configs.items() if k in only or k == reference}


def save_plan(path: Path, configs: dict[str, Config], reference: str) -> None:
    """plan.yaml: every variant's resolved config, which --resume reads back."""
    saved = {"variants": {k: v.to_dict() for k, v in configs.items()}, "reference": reference}
    path.write_text(yaml.safe_dump(saved, sort_keys=False))


def train_variants(configs: dict[str, Config], out: Path) -> dict[str, Path]:
    """Each variant into out/<name>, one after the other, as train.py trains; a finished one is skipped
    (resume). Every variant's input errors come before any training."""
    from . import crossval

    for cfg in configs.values():
        pipeline.check_inputs(cfg)
    done = {}
    for i, (name, cfg) in enumerate(configs.items(), 1):
        run = runs.start_run(cfg, out / name)
        log.info("=== variant %d/%d: %s (%s, %d px) ===", i, len(configs), name, cfg.backbone, cfg.image_size)
        start = time.perf_counter()
        prepared = pipeline.prepare_data(cfg, run)
        crossval.run_folds(cfg, prepared.ds, prepared.roles, run)
        log.info("variant %s: %.0f s", name, time.perf_counter() - start)
        done[name] = run
    return done


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def per_class_recall(tables: list[dict]) -> dict[str, float]:
    """Recall of each class over predictions tables (read_predictions' parts), pooled."""
    true = np.concatenate([t["labels"] for t in tables])
    pred = np.concatenate([t["pred"] for t in tables])
    return {c: float((pred[true == i] == i).mean()) if (true == i).any() else float("nan")
            for i, c in enumerate(tables[0]["classes"])}


def _fold_predictions(run_dir: Path, fold, kind: str) -> dict:
    """fold<k>/<kind>_predictions.csv of a run, read."""
    return read_predictions(run_dir / f"fold{fold}" / f"{kind}_predictions.csv")[""]


def inference_ms(model, images: np.ndarray, repeats: int = 5) -> float:
    """Milliseconds per image of the compiled forward pass (brainmri.backend) on one batch, median of
    `repeats` after a warm-up."""
    from .backend import compiled_forward

    forward = compiled_forward(model)
    x = images.astype(np.float32)
    forward(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / len(images)


def fold_accuracies(run_dir: Path, folds) -> dict[str, dict[int, float]]:
    """Per-fold accuracies a comparison may rest on: the test accuracy (when every fold has test predictions)
    and the validation accuracy at the last epoch. Never the best epoch's validation accuracy: the checkpoint
    was chosen on it, so it is biased upward, more for longer or noisier training."""
    from .training import read_history

    out = {"last_epoch_val_accuracy": {int(k): read_history(run_dir / f"fold{k}" / "history.csv")[-1]["val_accuracy"]
                                       for k in folds}}
    if all((run_dir / f"fold{k}" / "test_predictions.csv").is_file() for k in folds):
        tables = {int(k): _fold_predictions(run_dir, k, "test") for k in folds}
        out["test_accuracy"] = {k: float(np.mean(t["labels"] == t["pred"])) for k, t in tables.items()}
    return out


def run_row(name: str, run_dir: Path) -> tuple[dict, dict[str, dict[int, float]]]:
    """The table row of one finished run, and its per-fold accuracies by basis (see fold_accuracies)."""
    summary_path = run_dir / "cv_summary.json"
    if not summary_path.is_file():
        raise UserError(f"{run_dir} has no cv_summary.json: no fold of '{name}' finished")
    summary = json.loads(summary_path.read_text())
    classes = run_classes(run_dir)
    folds = summary["folds"]
    done = [json.loads((run_dir / f"fold{k}" / "done.json").read_text()) for k in folds]
    cfg = load_config(run_dir / "config.yaml")
    epochs = sum(d.get("epochs_run", d["epoch"]) for d in done)
    val_recall = per_class_recall([_fold_predictions(run_dir, k, "val") for k in folds])
    test_recall = [per_class_recall([_fold_predictions(run_dir, k, "test")]) for k in folds
                   if (run_dir / f"fold{k}" / "test_predictions.csv").is_file()]
    per_fold = fold_accuracies(run_dir, folds)
    test_acc = list(per_fold.get("test_accuracy", {}).values())
    last_acc = list(per_fold["last_epoch_val_accuracy"].values())
    row = {"variant": name, "backbone": cfg.backbone, "image_size": cfg.image_size, "folds": len(folds),
           **_model_costs(run_dir / f"fold{folds[0]}" / "best.keras", cfg),
           "val_accuracy_mean": summary["mean"]["val_accuracy"], "val_accuracy_std": summary["std"]["val_accuracy"],
           "val_f1_mean": summary["mean"].get("val_f1", float("nan")),
           "val_f1_std": summary["std"].get("val_f1", float("nan")),
           "test_accuracy_mean": float(np.mean(test_acc)) if test_acc else float("nan"),
           "test_accuracy_std": _std(test_acc), "last_epoch_val_accuracy_mean": float(np.mean(last_acc)),
           "last_epoch_val_accuracy_std": _std(last_acc),
           "seconds_per_epoch": sum(d["fit_seconds"] for d in done) / max(epochs, 1), "run": str(run_dir)}
    row.update({f"val_recall_{c}": v for c, v in val_recall.items()})
    if test_recall:
        row.update({f"test_recall_{c}": float(np.mean([r[c] for r in test_recall])) for c in classes})
    return row, per_fold


def _model_costs(model_path: Path, cfg: Config) -> dict:
    """Parameters (of the final training phase), inference time per image on a batch of the run's batch_size,
    and the model file's size."""
    from .models import count_params, load_model, set_trainable

    model = load_model(model_path, compile=False)
    if cfg.fine_tune_epochs:  # the best checkpoint may be from the frozen first phase: count the final phase's
        set_trainable(model, True, cfg.unfreeze, freeze_bn=True)
    params = count_params(model)
    size = model.input_shape[1]
    batch = np.random.default_rng(0).integers(0, 256, (cfg.batch_size, size, size, 3)).astype(np.uint8)
    return {"params_total": params["total"], "params_trainable": params["trainable"],
            "inference_ms_per_image": inference_ms(model, batch), "model_mb": model_path.stat().st_size / 2**20}


def _std(values: list[float]) -> float:
    if not values:
        return float("nan")
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # as the CV summary has it


def same_folds(reference_run: Path, run: Path) -> bool:
    """Whether every image the two runs share has the same role in every fold."""
    a, b = read_splits(reference_run / "splits.csv"), read_splits(run / "splits.csv")
    if a["roles"].shape[1] != b["roles"].shape[1]:
        return False
    index = {p: i for i, p in enumerate(b["paths"])}
    common = [(i, index[p]) for i, p in enumerate(a["paths"]) if p in index]
    if not common:
        return False
    ia, ib = map(list, zip(*common))
    return bool((a["roles"][ia] == b["roles"][ib]).all())


def paired_test(acc: dict[int, float], ref: dict[int, float], val_over_train: float) -> dict:
    """Fold-by-fold difference against the reference: the plain paired t-test, and Nadeau & Bengio's
    corrected resampled t-test (folds share training images, so the plain test is too confident)."""
    folds = sorted(set(acc) & set(ref))
    d = np.array([acc[k] - ref[k] for k in folds])
    out = {"folds": len(folds), "mean_difference": float(d.mean()) if len(d) else float("nan"),
           "differences": d.tolist(), "p_paired_t": float("nan"), "p_corrected_t": float("nan")}
    if len(d) < 2 or d.std(ddof=1) == 0:
        return out
    k, var = len(d), d.var(ddof=1)
    out["p_paired_t"] = float(stats.ttest_rel([acc[f] for f in folds], [ref[f] for f in folds]).pvalue)
    t = d.mean() / np.sqrt((1 / k + val_over_train) * var)
    out["p_corrected_t"] = float(2 * stats.t.sf(abs(t), k - 1))
    return out


def val_over_train(run: Path) -> float:
    rows = [r for r in _read_csv(run / "data_summary.csv") if r["fold"] == "0"]
    n = {r["role"]: int(r["total"]) for r in rows}
    return n.get(VAL, 0) / max(n.get(TRAIN, 1), 1)


def compare_runs(runs: dict[str, Path], reference: str, out: Path, formats=("png",)) -> list[dict]:
    """comparison.{csv,json,md} and figures in `out` for finished runs; returns the rows."""
    from . import plots
    from .training import read_history

    told = {name: run_classes(run) for name, run in runs.items()}
    for name, classes in told.items():
        if classes != told[reference]:
            raise UserError(f"run {name} tells {classes} apart, the reference {reference} {told[reference]}: "
                            "compare runs of one task and one class list")
    rows, accs = [], {}
    for name, run in runs.items():
        row, accs[name] = run_row(name, run)
        row["same_folds_as_reference"] = same_folds(runs[reference], run)
        rows.append(row)
    # held-out test accuracy where every run has it, else a fixed (the last) epoch's validation accuracy
    basis = "test_accuracy" if all("test_accuracy" in a for a in accs.values()) else "last_epoch_val_accuracy"
    ratio = val_over_train(runs[reference])
    for row in rows:
        row["comparison_basis"] = basis
        if row["variant"] != reference:
            row["vs_reference"] = {**paired_test(accs[row["variant"]][basis], accs[reference][basis], ratio),
                                   "basis": basis}
    write_table(rows, reference, out)
    curves = {}
    for name, run in runs.items():
        histories = [read_history(p) for p in sorted(run.glob("fold*/history.csv"))]
        length = min(len(h) for h in histories)
        curves[name] = np.mean([[r["val_accuracy"] for r in h[:length]] for h in histories], axis=0)
    plots.comparison(rows, curves, out / "figures", formats)
    return rows


def write_table(rows: list[dict], reference: str, out: Path) -> None:
    (out / "comparison.json").write_text(json.dumps({"reference": reference, "rows": rows}, indent=2))
    keys = [k for k in rows[0] if k != "vs_reference"]
    with open(out / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys + ["diff_vs_reference", "p_corrected_t"], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            vs = r.get("vs_reference", {})
            w.writerow({**r, "diff_vs_reference": vs.get("mean_difference", ""), "p_corrected_t": vs.get("p_corrected_t", "")})
    (out / "comparison.md").write_text(table_markdown(rows, reference))


BASIS_TEXT = {
    "test_accuracy": ("test accuracy", "test accuracy of each fold model on the held-out test set (with the same "
                      "folds, the same images for every fold and variant). The folds differ in their training data "
                      "but share that one test set, so the p-value covers training variation, not the sampling of "
                      "test images (evaluate.py's group-bootstrap intervals do)"),
    "last_epoch_val_accuracy": ("val accuracy, last epoch", "validation accuracy at the last epoch (a fixed epoch, "
                                "not chosen on these images), since not every run has a test set"),
}


def table_markdown(rows: list[dict], reference: str) -> str:
    recall_keys = [k for k in rows[0] if k.startswith("val_recall_")]
    short, long = BASIS_TEXT[rows[0]["comparison_basis"]]
    lines = ["| variant | params (trainable) | val accuracy, best epoch: selection (optimistic) | val macro F1, best "
             "epoch: selection (optimistic) | test accuracy | val accuracy, last epoch | "
             + " | ".join(f"val recall {k[11:]} (selection)" for k in recall_keys)
             + f" | s/epoch | ms/image | MB | vs {reference}: difference in {short} (p, corrected) | same folds |",
             "|---" * (11 + len(recall_keys)) + "|"]
    for r in rows:
        vs = r.get("vs_reference")
        diff = "reference" if vs is None else f"{vs['mean_difference']:+.4f} (p {_p(vs['p_corrected_t'])})"
        lines.append(
            f"| {r['variant']} | {r['params_total']:,} ({r['params_trainable']:,}) | "
            f"{r['val_accuracy_mean']:.4f} ± {r['val_accuracy_std']:.4f} | {_num(r['val_f1_mean'])} | "
            f"{_num(r['test_accuracy_mean'])} | {_num(r['last_epoch_val_accuracy_mean'])} | "
            + " | ".join(_num(r[k]) for k in recall_keys)
            + f" | {r['seconds_per_epoch']:.1f} | {r['inference_ms_per_image']:.2f} | {r['model_mb']:.1f} | {diff} | "
            f"{'yes' if r['same_folds_as_reference'] else 'NO'} |")
    k = rows[0]["folds"]
    lines += ["", f"Compared on: {long}.", "",
              "The best-epoch validation columns are what each fold's checkpoint was selected on: biased upward "
              "(more so with more epochs or noisier curves), shown for reference, not used for the comparison.", "",
              f"Mean ± std over {k} folds. The paired test compares fold by fold with the reference; with "
              f"{k} folds it decides little: a p-value above 0.05 means 'not shown', not 'equal', and the "
              "corrected test (Nadeau & Bengio) allows for the folds sharing training images."]
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def _p(v) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.3f}"
