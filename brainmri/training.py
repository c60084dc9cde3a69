"""Train one fold, and the cross-validation loop over folds (resumable, one fold per job if wanted)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from . import backend, models
from .config import Config
from .batches import augmentation_layers, make_batches
from .data import Dataset
from .errors import UserError
from .metrics import best_epoch_row, score
from .predictions import Predictions, predict, write_predictions
from .atomic import write_atomic
from .runs import environment
from .splits import TEST, TRAIN, VAL

log = logging.getLogger("brainmri")


def device_settings(cfg: Config) -> dict:
    """Mixed precision, compilation and several GPUs for this backend (brainmri.backend.device_settings)."""
    return backend.device_settings(cfg.mixed_precision, cfg.jit_compile, cfg.batch_size, cfg.cache_dir)


def compile_model(cfg: Config, num_classes: int, jit_compile) -> keras.Model:
    """The configured classifier, compiled. With fine_tune_epochs the backbone starts frozen (head only)."""
    binary = cfg.task == "binary"
    model = models.build_classifier(cfg.backbone, cfg.image_size, num_classes, cfg.weights, cfg.dropout,
                                    cfg.train_backbone and not cfg.fine_tune_epochs, cfg.unfreeze, binary=binary)
    _compile(model, cfg, cfg.learning_rate, num_classes, jit_compile)
    return model


def _compile(model, cfg: Config, learning_rate: float, num_classes: int, jit_compile) -> None:
    if cfg.task == "binary":
        loss, metrics = "binary_crossentropy", ["accuracy", keras.metrics.AUC(name="auc"),
                                                keras.metrics.Precision(name="precision"),
                                                keras.metrics.Recall(name="recall")]
    else:
        loss, metrics = "categorical_crossentropy", models.macro_metrics(num_classes)
    # Keras 3 passes sample weights (what class_weight becomes) to the loss and to weighted_metrics only, never
    # to metrics= (trainers/compile_utils.py, CompileMetrics.update_state): with class_weight the training loss
    # is weighted and every logged metric (accuracy, macro precision/recall/F1, AUC) stays the plain one.
    model.compile(optimizer=models.make_optimizer(cfg.optimizer, learning_rate, cfg.momentum), loss=loss,
                  metrics=metrics, jit_compile=jit_compile)


def start_fine_tuning(model, cfg: Config, num_classes: int, jit_compile) -> None:
    """Phase two of the fine-tuning schedule: unfreeze the `unfreeze` part (BatchNorm frozen), lower rate."""
    models.set_trainable(model, True, cfg.unfreeze, freeze_bn=True)
    _compile(model, cfg, cfg.fine_tune_learning_rate, num_classes, jit_compile)
    n = models.count_params(model)
    log.info("fine-tuning: %s trainable parameters (unfreeze %s, BatchNorm frozen), learning rate %g",
             f"{n['trainable']:,}", cfg.unfreeze, cfg.fine_tune_learning_rate)


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(f)]


RESUME_STATE = "last_state.json"  # beside last.keras: the training state a resumed fold needs besides the model
LAST_PENDING = ".last.tmp.keras"  # an epoch's model until its state is written (Keras wants .keras)
BEST_PENDING = ".best.pending.keras"  # the best checkpoint until its epoch is saved for resume (Keras wants .keras)


def _model_for_fold(cfg: Config, fold_dir: Path, num_classes: int, settings: dict):
    """A fresh model, or the last epoch's model, its history and saved state when an interrupted fold is
    resumed: (model, history, state or None)."""
    history = read_history(fold_dir / "history.csv")
    if history:
        _finish_saving(fold_dir)
    if history and (fold_dir / "last.keras").is_file():
        return _resume(fold_dir, models.load_model(fold_dir / "last.keras"), history)
    for stale in ("history.csv", "last.keras", "best.keras", BEST_PENDING, RESUME_STATE, LAST_PENDING):
        (fold_dir / stale).unlink(missing_ok=True)
    model = compile_model(cfg, num_classes, settings["jit_compile"])
    n = models.count_params(model)
    log.info("model %s: %s parameters, %s trainable", model.name, f"{n['total']:,}", f"{n['trainable']:,}")
    return model, [], None


def _finish_saving(fold_dir: Path) -> None:
    """Finish the saving of an epoch that was interrupted after its state was written. RESUME_STATE is the
    commit point: it records the digest of the epoch's model (LAST_PENDING) and of its best checkpoint
    (BEST_PENDING, where the epoch improved on the best); a pending file it describes is renamed into place
    (last.keras, best.keras), as the interrupted epoch end would have done. One it does not describe belongs to
    an epoch that was not saved (perhaps half written) and runs again: it is dropped. By digest, not by the
    optimizer's iteration count: fine-tuning starts a new optimizer, whose count starts at 0 again."""
    state_path = fold_dir / RESUME_STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    for pending, final, key in ((LAST_PENDING, "last.keras", "model_digest"),
                                (BEST_PENDING, "best.keras", "best_pending_digest")):
        path = fold_dir / pending
        if path.is_file() and state.get(key) and state[key] == _digest(path):
            path.replace(fold_dir / final)
        else:
            path.unlink(missing_ok=True)


def _digest(path: Path) -> str:
    """The file's BLAKE2b digest (a model file: a few MB to a few hundred)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resume(fold_dir: Path, model, history: list[dict]):
    """The saved state checked against last.keras, the dropout seeds put back, history.csv cut to last.keras."""
    path = fold_dir / RESUME_STATE
    if not path.is_file():  # a fold interrupted before this file existed
        log.warning("fold %s: no %s: resuming after epoch %d with a fresh learning-rate plateau counter",
                    fold_dir.name, RESUME_STATE, len(history))
        return model, history, None
    state = json.loads(path.read_text())
    done = state["epoch"] + 1
    if int(model.optimizer.iterations) != state["iterations"] or len(history) < done:
        raise UserError(f"{fold_dir}: last.keras, {RESUME_STATE} and history.csv disagree (interrupted while "
                        f"saving); delete {fold_dir} to train this fold again")
    seeds = _seed_states(model)
    if len(seeds) != len(state["seed_states"]):
        raise UserError(f"{fold_dir / RESUME_STATE} does not fit last.keras; delete {fold_dir} to train this fold again")
    for var, value in zip(seeds, state["seed_states"]):
        var.assign(np.asarray(value, dtype=var.dtype))
    if len(history) > done:  # the row of an epoch whose checkpoint was not written: that epoch runs again
        with open(fold_dir / "history.csv", newline="") as f:  # as written: CSVLogger ends rows with \r\n
            lines = f.read().splitlines(keepends=True)
        write_atomic(fold_dir / "history.csv", "".join(lines[:done + 1]))
        history = history[:done]
    log.info("fold %s: resuming after epoch %d, learning rate %g", fold_dir.name, done,
             float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    return model, history, state


def _seed_states(model) -> list:
    """The dropout layers' random-seed variables: not in the .keras file, so kept in the resume state."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


class PlateauLR(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counter (wait, best, cooldown) is restored from a resume state."""

    def __init__(self, restore: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.restore = restore

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.restore:
            self.wait, self.best = self.restore["wait"], self.restore["best"]
            self.cooldown_counter = self.restore["cooldown_counter"]

    def state(self) -> dict:
        return {"wait": int(self.wait), "best": None if self.best is None else float(self.best),
                "cooldown_counter": int(self.cooldown_counter)}


class SaveForResume(keras.callbacks.Callback):
    """At each epoch end, after the learning-rate cut and the history row: the model (as LAST_PENDING), then
    RESUME_STATE (the plateau counter, the best checkpoint's value, the dropout seeds, the backend's random
    state, the digests of the pending files; written atomically: the epoch is saved once it is there), then the
    model is renamed last.keras and the epoch's best checkpoint (written as BEST_PENDING) becomes best.keras
    (_finish_saving does those renames where they were interrupted).
    `rng`: a resumed phase's saved random state, put back as its first epoch begins (PyTorch's fit draws from
    it on starting, which the uninterrupted run did once, before its first epoch)."""

    def __init__(self, fold_dir: Path, plateau: PlateauLR, best: keras.callbacks.ModelCheckpoint, rng=None):
        super().__init__()
        self.fold_dir, self.plateau, self.best, self.rng = fold_dir, plateau, best, rng

    def on_epoch_begin(self, epoch, logs=None):
        backend.set_rng_state(self.rng)
        self.rng = None

    def on_epoch_end(self, epoch, logs=None):
        pending, best_pending = self.fold_dir / LAST_PENDING, self.fold_dir / BEST_PENDING
        self.model.save(pending)
        state = {"model_digest": _digest(pending),
                 "best_pending_digest": _digest(best_pending) if best_pending.is_file() else None,
                 "epoch": epoch, "iterations": int(self.model.optimizer.iterations),
                 "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                 "plateau": self.plateau.state(),
                 "best_checkpoint": None if self.best.best is None else float(self.best.best),
                 "seed_states": [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)],
                 "backend_rng": backend.rng_state()}
        write_atomic(self.fold_dir / RESUME_STATE, json.dumps(state, indent=1))  # the epoch is saved
        pending.replace(self.fold_dir / "last.keras")
        if best_pending.is_file():  # only now: an epoch that resume would run again must not leave its best behind
            best_pending.replace(self.fold_dir / "best.keras")


def _callbacks(cfg: Config, fold_dir: Path, history: list[dict], state: dict | None = None) -> list:
    """In this order: the learning-rate cut (it logs the rate the epoch used), the best checkpoint, the history
    row, then the resume checkpoint, so last.keras holds the cut rate. `state` restores a resumed phase."""
    best_so_far = max((r["val_accuracy"] for r in history), default=None)
    if state and state["best_checkpoint"] is not None:
        best_so_far = state["best_checkpoint"]
    plateau = PlateauLR(state["plateau"] if state else None, monitor="val_accuracy", mode="max",
                        factor=cfg.lr_factor, patience=cfg.lr_patience, verbose=1)
    (fold_dir / BEST_PENDING).unlink(missing_ok=True)  # left by an epoch that did not finish saving
    best = keras.callbacks.ModelCheckpoint(fold_dir / BEST_PENDING, monitor="val_accuracy", mode="max",
                                           save_best_only=True, initial_value_threshold=best_so_far)
    return [plateau, best, keras.callbacks.CSVLogger(fold_dir / "history.csv", append=bool(history)),
            SaveForResume(fold_dir, plateau, best, state and state.get("backend_rng")), *_tensorboard(fold_dir)]


def _tensorboard(fold_dir: Path) -> list:
    """Curves for `tensorboard --logdir outputs` (<run>/tensorboard/foldK), where TensorFlow is installed:
    Keras' TensorBoard callback writes through tf.summary (with the tensorboard package) on every backend."""
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tensorboard") is None:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(fold_dir.parent / "tensorboard" / fold_dir.name),
                                        write_graph=False, profile_batch=0)]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights, n / (classes x count), for the classes present in training."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    out = {c: 1.0 for c in range(num_classes)}
    out.update({int(c): float(w) for c, w in zip(present, weights)})
    log.info("class weights: %s", {k: round(v, 3) for k, v in out.items()})
    return out


def train_fold(cfg: Config, ds: Dataset, roles: np.ndarray, fold: int, run_dir: Path, settings: dict) -> dict:
    """Train fold `fold` (skipped if already done), keep its best model and predictions; return its row."""
    fold_dir = run_dir / f"fold{fold}"
    done = fold_dir / "done.json"
    if done.is_file():
        log.info("fold %d: already done, skipped", fold)
        return json.loads(done.read_text())
    fold_dir.mkdir(exist_ok=True)
    with _claimed(fold_dir, fold):
        return _train_claimed_fold(cfg, ds, roles, fold, fold_dir, settings)


FOLD_CLAIM = ".training"  # in a fold folder while a job trains it: {"pid", "host"}


@contextlib.contextmanager
def _claimed(fold_dir: Path, fold: int):
    """Hold the fold for this job while it trains: a second job on it (a requeued cluster job, a command run
    twice) would write over the first's checkpoints. Refused while another job's claim stands; a claim left by
    a job that is gone (this machine: its process no longer runs) is taken over. Released however this ends."""
    claim = fold_dir / FOLD_CLAIM
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            with open(claim, "x") as f:  # exclusive create: of two jobs, one gets it
                f.write(mine)
            break
        except FileExistsError:
            if not _claim_left_behind(claim):
                raise UserError(f"fold {fold} of {fold_dir.parent} is being trained by another job ({claim}: "
                                f"{claim.read_text().strip()}); wait for it, or delete {claim} if no job is") from None
            claim.unlink(missing_ok=True)
    else:
        raise UserError(f"fold {fold} of {fold_dir.parent}: another job claimed it just now ({claim})")
    try:
        yield
    finally:
        claim.unlink(missing_ok=True)


def _claim_left_behind(claim: Path) -> bool:
    """Whether a fold's claim is a dead job's: made on this machine by a process that no longer runs (a claim
    from another machine cannot be checked: it stands until deleted)."""
    try:
        holder = json.loads(claim.read_text())
        if holder.get("host") != socket.gethostname():
            return False
        os.kill(int(holder["pid"]), 0)
        return False
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or half written: it stands
        return False


def _train_claimed_fold(cfg: Config, ds: Dataset, roles: np.ndarray, fold: int, fold_dir: Path,
                        settings: dict) -> dict:
    """train_fold, once the fold is this job's."""
    done = fold_dir / "done.json"
    if done.is_file():  # finished by another job between our look and our claim
        return json.loads(done.read_text())
    keras.utils.set_random_seed(cfg.seed + fold)
    tr, va, te = (np.flatnonzero(roles[:, fold] == r) for r in (TRAIN, VAL, TEST))
    fit_seconds, epochs_run = _fit(cfg, ds, (tr, va, te), fold, fold_dir, settings)
    best = models.load_model(fold_dir / "best.keras", compile=False)
    row = best_epoch_row(read_history(fold_dir / "history.csv"))
    result = {"fold": fold, "epoch": row["epoch"] + 1, **{k: v for k, v in row.items() if k.startswith("val_")},
              "fit_seconds": round(fit_seconds, 2), "epochs_run": epochs_run,
              **_predict_held_out(cfg, ds, best, fold, fold_dir, va, te)}
    for name in ("last.keras", RESUME_STATE, LAST_PENDING):  # the best model is what is kept
        (fold_dir / name).unlink(missing_ok=True)
    write_atomic(fold_dir / "env.json", json.dumps(environment(), indent=2))
    write_atomic(done, json.dumps(result, indent=2))
    log.info("fold %d: best epoch %d, val_accuracy %.4f, test_accuracy %s", fold, result["epoch"],
             result["val_accuracy"], f"{result.get('test_accuracy', float('nan')):.4f}")
    return result


def _fit(cfg: Config, ds: Dataset, split: tuple, fold: int, fold_dir: Path, settings: dict) -> tuple[float, int]:
    """Both phases of the fold's training (head only, then fine-tuning, when fine_tune_epochs), resumed where
    an interrupted run stopped; returns (seconds in fit, epochs run)."""
    tr, va, te = split
    n = 1 if cfg.task == "binary" else len(ds.classes)  # outputs: one sigmoid unit, or one per class
    def scope():
        return settings["strategy"].scope() if settings["strategy"] else contextlib.nullcontext()

    with scope():
        model, history, state = _model_for_fold(cfg, fold_dir, n, settings)
    augment = augmentation_layers(cfg.augment_rotation, cfg.augment_shift, cfg.augment_zoom, cfg.augment_flip,
                                  cfg.augment_contrast, seed=cfg.seed + fold)
    multiple = settings.get("batch_multiple", 1)
    val_data = make_batches(ds.images[va], ds.labels[va], n, cfg.batch_size, multiple=multiple)
    total = cfg.epochs + cfg.fine_tune_epochs
    log.info("fold %d: %d train, %d val, %d test images; %d epochs", fold, len(tr), len(va), len(te), total)
    weights = _class_weight_setting(cfg, ds.labels[tr], len(ds.classes))
    start, epochs_run = time.perf_counter(), total - len(history)
    for phase_start, phase_end in ((0, cfg.epochs), (cfg.epochs, total)):
        if cfg.fine_tune_epochs and phase_end == total and len(history) <= cfg.epochs:
            with scope():
                start_fine_tuning(model, cfg, n, settings["jit_compile"])  # (a resumed phase two is already set)
        if len(history) < phase_end:
            restore = state if state and state["epoch"] >= phase_start else None  # a new phase starts afresh
            train_data = make_batches(ds.images[tr], ds.labels[tr], n, cfg.batch_size, shuffle=True,
                                      seed=cfg.seed + fold, augment=augment, first_epoch=len(history),
                                      multiple=multiple)
            steps = None if isinstance(train_data, keras.utils.PyDataset) else -(-len(tr) // cfg.batch_size)
            model.fit(train_data, validation_data=val_data, epochs=phase_end, initial_epoch=len(history),
                      steps_per_epoch=steps,  # (the tf.data stream is endless; epoch e's batch order is fixed)
                      callbacks=_callbacks(cfg, fold_dir, history, restore), shuffle=False,  # tf.data shuffles
                      class_weight=weights, verbose=1 if sys.stdout.isatty() else 2)
            history, state = read_history(fold_dir / "history.csv"), None
    return time.perf_counter() - start, epochs_run


def _class_weight_setting(cfg: Config, train_labels: np.ndarray, num_classes: int) -> dict[int, float] | None:
    """The loss weights of class_weight: balanced (None: none)."""
    if cfg.class_weight != "balanced":
        return None
    weights = class_weights(train_labels, num_classes)
    log.info("class_weight balanced: history.csv's 'loss' is class-weighted; every other column (accuracy, "
             "precision, recall, f1, and all val_ columns) is plain, unweighted")
    return weights


def _predict_held_out(cfg: Config, ds: Dataset, model, fold: int, fold_dir: Path, va: np.ndarray,
                      te: np.ndarray) -> dict:
    """val_predictions.csv and test_predictions.csv of the best model; its test scores."""
    scores = {}
    for name, idx in (("val", va), ("test", te)):
        if len(idx):
            probs = predict(model, ds.images[idx], cfg.batch_size)
            write_predictions(fold_dir / f"{name}_predictions.csv", ds.classes,
                              [Predictions(f"fold{fold}", [ds.paths[i] for i in idx], ds.labels[idx], probs)],
                              subsets=[ds.subsets[i] for i in idx])
            if name == "test":
                scores = score(ds.labels[idx], probs, len(ds.classes), "test")
    return scores
