"""The study's protocol on one GPU with Keras on JAX, timed: one command, about 10 minutes on one H100.

    python benchmarks/gpu_check.py                    # the real data, the study's settings (below)
    python benchmarks/gpu_check.py --quick            # tiny settings on any machine, a CPU too: proves it runs
    python benchmarks/gpu_check.py --data DIR --report-dir DIR

The protocol: EfficientNetB0 at 150 px, batch 32, 12 epochs, 5-fold CV, a group-aware (near-duplicate-aware)
90/10 hold-out test split, weights none (a GPU box without internet has no ImageNet file), mixed precision
and XLA on ("auto": on with a GPU), through the real train.py; then evaluate.py and gradcam.py on the run.
--quick: a 10% share of the data at 64 px, 2 folds of 2 epochs, 16 Grad-CAM images.

Writes gpu_check.json and gpu_check.md into --report-dir (default: the check's folder under outputs/gpu_check/):
the device and library versions; seconds per epoch (the first, with compilation, and the steady ones);
training images/s against the model's own ceiling on this device (its compiled train step on one batch
already there); the whole run's wall time; evaluate.py's time; Grad-CAM images/s (batched, against the
forward pass); the CV figures and the test figures. KERAS_BACKEND may name another backend (default jax).
On a machine without Keras, carry its wheels: benchmarks/README.md says how.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET = "datasets/brain-tumor-classification-mri"
STUDY = ["backbone=efficientnetb0", "image_size=150", "batch_size=32", "epochs=12", "folds=5", "protocol=holdout",
         "test_fraction=0.1", "split=group", "weights=none", "mixed_precision=auto", "jit_compile=auto"]
QUICK = ["image_size=64", "epochs=2", "folds=2", "subset_fraction=0.1"]


def find_data(given: str | None) -> Path:
    """--data, else the dataset in shared/ inside the checkout (as carried to a GPU box), else beside it."""
    for path in ([Path(given)] if given else [ROOT / "shared" / DATASET, ROOT.parent / "shared" / DATASET]):
        if (path / "Training").is_dir():
            return path
    raise SystemExit(f"no dataset at {given or ROOT / 'shared' / DATASET}: pass --data DIR (Training/, Testing/)")


class EpochTimer:
    """Per epoch of every fold: seconds of the training part (to validation) and of the whole epoch. Each row is
    also appended to `log` as it comes, so a check stopped by its time limit still tells its epoch speed."""

    def __init__(self, log: Path | None = None):
        self.rows, self.log = [], log

    def callback(self, fold_dir: Path):
        import keras

        rows, start, log = self.rows, {}, self.log

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                start.update(epoch=time.perf_counter(), test=None)

            def on_test_begin(self, logs=None):
                start["test"] = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                now = time.perf_counter()
                rows.append({"fold": fold_dir.name, "epoch": epoch, "seconds": now - start["epoch"],
                             "train_seconds": (start["test"] or now) - start["epoch"]})
                if log:
                    with open(log, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
        return Timer()


def train(args, run: Path, timer: EpochTimer) -> float:
    """train.py on the protocol, with the epoch timer beside its callbacks; returns its wall time."""
    import train as train_script
    from brainmri import training

    original = training._callbacks
    training._callbacks = lambda cfg, fold_dir, *a, **k: original(cfg, fold_dir, *a, **k) + [timer.callback(fold_dir)]
    settings = [f"data_dir={args.data}", f"cache_dir={args.cache_dir}", *STUDY, *(QUICK if args.quick else [])]
    start = time.perf_counter()
    try:
        code = train_script.main(["--run-dir", str(run), "--set", *settings])
    finally:
        training._callbacks = original
    if code:
        raise SystemExit(f"train.py failed (exit {code})")
    return time.perf_counter() - start


def ceiling(run: Path, batch: int, steps: int) -> dict:
    """Images/s of the model's compiled train step on one batch already on the device, and of its forward pass."""
    import keras
    import numpy as np

    from brainmri import backend
    from brainmri.config import load_config
    from brainmri.training import compile_model, device_settings

    cfg = load_config(run / "config.yaml")
    model = compile_model(cfg, 4, device_settings(cfg)["jit_compile"])
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.integers(0, 256, (batch, cfg.image_size, cfg.image_size, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(np.eye(4, dtype="float32")[rng.integers(0, 4, batch)])
    forward = backend.compiled_forward(model)
    out = {}
    for name, step in (("train_step", lambda: model.train_on_batch(x, y)), ("forward", lambda: forward(x))):
        step()
        step()  # compiled and warm
        start = time.perf_counter()
        for _ in range(steps):
            step()  # (both return numpy values: each waits for the device)
        out[name] = batch * steps / (time.perf_counter() - start)
    return out


def gradcam_rate(run: Path, batch: int, reps: int) -> dict:
    """Batched Grad-CAM images/s of fold 0's model, against its forward pass (brainmri.cam, brainmri.backend)."""
    import numpy as np

    from brainmri import backend, cam
    from brainmri.models import load_model

    model = load_model(run / "fold0" / "best.keras", compile=False)
    size = model.input_shape[1]
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype(np.uint8)
    fn, forward = cam.make_cam_fn(cam.split_model(model)), backend.compiled_forward(model)
    rates = {}
    for name, call in (("gradcam", lambda: fn(images, np.full(batch, -1, np.int32))), ("forward", lambda: forward(images))):
        call()
        start = time.perf_counter()
        for _ in range(reps):
            call()
        rates[name] = batch * reps / (time.perf_counter() - start)
    return rates


def timed_script(module: str, argv: list[str]) -> float:
    """Wall time of a script's main(argv); stops the check if it fails."""
    script = __import__(module)
    start = time.perf_counter()
    code = script.main(argv)
    if code:
        raise SystemExit(f"{module}.py {' '.join(argv)} failed (exit {code})")
    return time.perf_counter() - start


def epoch_figures(rows: list[dict], run: Path) -> dict:
    """Seconds per epoch (first epochs, with compilation; steady ones) and training images/s."""
    import numpy as np

    first = [r for r in rows if r["epoch"] == 0]
    steady = [r for r in rows if r["epoch"] > 0] or first  # (--quick has one epoch: its first)
    train_part = float(np.median([r["train_seconds"] for r in steady]))
    done = [json.loads(p.read_text()) for p in sorted(run.glob("fold*/done.json"))]
    return {"first_epoch_seconds": [round(r["seconds"], 2) for r in first],
            "steady_epoch_seconds_median": float(np.median([r["seconds"] for r in steady])),
            "steady_train_seconds_median": train_part, "train_images_per_epoch": _train_images(run),
            "train_images_per_second": _train_images(run) / train_part,
            "fit_seconds_per_fold": [d["fit_seconds"] for d in done]}


def _train_images(run: Path) -> int:
    """Training images of fold 0 (data_summary.csv)."""
    import csv

    with open(run / "data_summary.csv", newline="") as f:
        return next(int(r["total"]) for r in csv.DictReader(f) if r["fold"] == "0" and r["role"] == "train")


def results(run: Path) -> dict:
    """The CV summary and the test set's figures from the run's own files."""
    cv = json.loads((run / "cv_summary.json").read_text())
    (evaluation,) = sorted(run.glob("evaluation*/test/summary.json"))[-1:]
    test = json.loads(evaluation.read_text())
    keep = ("images", "model", "accuracy", "accuracy_ci95_groups", "macro_f1", "macro_f1_ci95_groups", "ece",
            "mean_fold_accuracy", "fold_accuracy")
    return {"cv": {"folds": cv.get("folds"), "mean": cv["mean"], "std": cv["std"]},
            "test": {k: test[k] for k in keep if k in test}}


def resolved(settings: list[str]) -> list[str]:
    """key=value overrides with the later of two same keys kept, in first-seen order."""
    return [f"{k}={v}" for k, v in dict(s.split("=", 1) for s in settings).items()]


def markdown(r: dict) -> str:
    t, e, g, c = r["timings"], r["timings"]["epochs"], r["timings"]["gradcam"], r["timings"]["ceiling"]
    cv, test = r["figures"]["cv"], r["figures"]["test"]
    lines = [f"# GPU check: the study's protocol with Keras on {r['versions']['keras_backend']}"
             + (" (--quick: tiny settings, figures not meaningful)" if r["quick"] else ""), "",
             f"Device: **{r['device']}**; " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) +
             f"; mixed precision {'on' if r['mixed_precision'] else 'off'}; {r['date']}.", "",
             f"Settings: {' '.join(r['settings'])}", "",
             "| timing | value |", "|---|---|",
             f"| whole run (train + evaluate + Grad-CAM) | {t['whole_run_seconds']:.0f} s |",
             f"| train.py (data, audit, {len(e['first_epoch_seconds'])} folds) | {t['train_seconds']:.0f} s |",
             f"| first epoch of each fold (with compilation) | {', '.join(f'{s:.1f}' for s in e['first_epoch_seconds'])} s |",
             f"| steady epoch (median; training + validation) | {e['steady_epoch_seconds_median']:.2f} s |",
             f"| training images/s (steady, {e['train_images_per_epoch']} images per epoch) | "
             f"{e['train_images_per_second']:.0f} |",
             f"| the model's ceiling: compiled train step on one batch on the device | {c['train_step']:.0f} images/s "
             f"(training reaches **{e['train_images_per_second'] / c['train_step']:.2f}** of it) |",
             f"| evaluate.py | {t['evaluate_seconds']:.0f} s |",
             f"| gradcam.py ({r['gradcam_images']} images, panels and figures included) | {t['gradcam_seconds']:.0f} s |",
             f"| Grad-CAM, batched (fold 0's model) | {g['gradcam']:.0f} images/s ({g['gradcam'] / g['forward']:.2f} "
             f"of the forward pass, {g['forward']:.0f} images/s) |", "",
             "| figure | value |", "|---|---|",
             f"| CV validation accuracy (mean ± std over folds, best epoch) | {cv['mean']['val_accuracy']:.4f} ± "
             f"{cv['std']['val_accuracy']:.4f} |"]
    if "accuracy" in test:
        lo, hi = test.get("accuracy_ci95_groups", (float("nan"),) * 2)
        lines += [f"| test accuracy ({test['model']}, {test['images']} images) | {test['accuracy']:.4f} "
                  f"(95% CI {lo:.4f}-{hi:.4f}, near-duplicate groups resampled) |",
                  f"| test macro F1 | {test['macro_f1']:.4f} |",
                  f"| mean test accuracy of the fold models | {test['mean_fold_accuracy']:.4f} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs (on a CPU too)")
    p.add_argument("--data", help="the dataset (Training/, Testing/); default shared/" + DATASET)
    p.add_argument("--out", help="where the run goes (default outputs/gpu_check/<time>)")
    p.add_argument("--report-dir", help="where gpu_check.json and .md go (default: --out)")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache"), help="decoded images, JAX's compiled programs")
    args = p.parse_args(argv)
    args.data = find_data(args.data)
    out = Path(args.out or ROOT / "outputs" / "gpu_check" / time.strftime("%Y%m%d-%H%M%S"))
    report_dir = Path(args.report_dir or out)
    import keras

    from brainmri import backend

    report_dir.mkdir(parents=True, exist_ok=True)
    start, timer = time.perf_counter(), EpochTimer(report_dir / "gpu_check_epochs.jsonl")
    run = out / "run"
    stages = {}

    def stage(key: str, seconds: float) -> None:
        """Each stage's time goes to gpu_check_stages.json as it ends: a check stopped by a limit keeps them."""
        stages[key] = seconds
        (report_dir / "gpu_check_stages.json").write_text(json.dumps(stages, indent=2))

    t_train = train(args, run, timer)
    stage("train_seconds", t_train)
    gradcam_images = 16 if args.quick else 64
    t_eval = timed_script("evaluate", [str(run)])
    stage("evaluate_seconds", t_eval)
    t_cam = timed_script("gradcam", [str(run), "--limit", str(gradcam_images)])
    stage("gradcam_seconds", t_cam)
    whole = time.perf_counter() - start
    gpus = backend.gpu_names()
    result = {"device": ", ".join(gpus) or "CPU (no GPU found)", "quick": args.quick, "date": time.strftime("%Y-%m-%d"),
              "versions": {"keras": keras.__version__, **backend.versions()}, "mixed_precision": bool(gpus),
              "settings": resolved(STUDY + (QUICK if args.quick else [])), "data": str(args.data), "run": str(run),
              "gradcam_images": gradcam_images,
              "timings": {"whole_run_seconds": whole, "train_seconds": t_train, "evaluate_seconds": t_eval,
                          "gradcam_seconds": t_cam, "epochs": epoch_figures(timer.rows, run),
                          "ceiling": ceiling(run, 32, 3 if args.quick else 20),
                          "gradcam": gradcam_rate(run, 32, 2 if args.quick else 10),
                          "per_epoch": timer.rows},
              "figures": results(run)}
    (report_dir / "gpu_check.json").write_text(json.dumps(result, indent=2))
    (report_dir / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
