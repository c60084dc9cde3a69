"""An interrupted and resumed fold trains exactly as an uninterrupted one: the learning-rate cut, the plateau
counter, the best checkpoint's threshold, the dropout seeds and the batch order all carry over."""

import json
import re

import keras
import numpy as np
import pytest

import train
from brainmri import models, training

EPOCHS = 6
TINY = ["image_size=32", "backbone=small_cnn", "weights=none", "folds=2", "batch_size=16", f"epochs={EPOCHS}",
        "lr_factor=0.5"]


FINE_TUNE = (f"epochs={EPOCHS // 2}", f"fine_tune_epochs={EPOCHS - EPOCHS // 2}")


def _fold0(tmp_path, data, run, patience, extra=()):
    return train.main(["--run-dir", str(run), "--fold", "0", "--set", f"data_dir={data}",
                       f"cache_dir={tmp_path / 'cache'}", f"lr_patience={patience}", *TINY, *extra])


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of epoch `epoch` (after every other callback), or after its batch `batch`."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.stop_epoch, self.stop_batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.stop_epoch and batch == self.stop_batch:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.stop_epoch and self.stop_batch is None:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, kaggle_dir):
    """fold0/ of an uninterrupted run, per lr_patience."""
    done = {}

    def get(patience, extra=()):
        if (patience, extra) not in done:
            tmp = tmp_path_factory.mktemp(f"whole{patience}")
            assert _fold0(tmp, kaggle_dir, tmp / "run", patience, extra) == 0
            done[patience, extra] = tmp / "run" / "fold0"
        return done[patience, extra]

    return get


def _first_cut(history) -> int:
    """The epoch at whose end the learning rate was first cut."""
    lrs = [r["learning_rate"] for r in history]
    cuts = [e for e in range(len(lrs) - 1) if lrs[e + 1] < lrs[e]]
    # the settings make a cut with an epoch after it (mid_epoch stops inside it), or the test proves nothing
    assert cuts and cuts[0] < EPOCHS - 1, lrs
    return cuts[0]


@pytest.mark.parametrize("patience, where", [
    (1, "after_the_cut"),         # Ctrl-C between epochs, right after the epoch whose end cut the rate
    (1, "mid_epoch"),             # Ctrl-C inside the epoch after the cut: that epoch runs again
    (1, "before_checkpoint"),     # history row written, last.keras not yet: that epoch runs again
    (2, "plateau_counter_at_1"),  # one epoch without improvement counted, the cut comes after the resume
    (1, "fine_tuning_phase_two"),  # inside the second phase (backbone unfrozen, its own optimizer)
    (1, "model_saved_state_not"),  # the epoch's model written, its resume state not yet: that epoch runs again
    (1, "first_epochs_model_saved_state_not"),  # the same in the first epoch: no epoch saved, the fold starts anew
    (1, "best_epochs_state_saved_model_not_in_place"),  # the state written, the model and the best checkpoint not
    #                                                     yet renamed into place, in the epoch best.keras comes from
    (1, "first_fine_tuning_epochs_model_saved_state_not"),  # its optimizer counts iterations from 0 again
])
def test_resumed_run_keeps_the_learning_rate_cut(uninterrupted, kaggle_dir, tmp_path, monkeypatch, patience, where):
    one_epoch_then_fine_tuning = ("epochs=1", f"fine_tune_epochs={EPOCHS - 1}")
    extra = {"fine_tuning_phase_two": FINE_TUNE,
             "first_fine_tuning_epochs_model_saved_state_not": one_epoch_then_fine_tuning}.get(where, ())
    whole = uninterrupted(patience, extra)
    expected = training.read_history(whole / "history.csv")
    cut = EPOCHS // 2 + 1 if extra else _first_cut(expected)
    original = training._callbacks
    stop = {"after_the_cut": Interrupt(cut), "mid_epoch": Interrupt(cut + 1, batch=1),
            "plateau_counter_at_1": Interrupt(cut - 1), "before_checkpoint": None,
            "fine_tuning_phase_two": Interrupt(cut)}.get(where)
    accuracies = [r["val_accuracy"] for r in expected]
    where, cut = {"first_epochs_model_saved_state_not": ("model_saved_state_not", 0),
                  "best_epochs_state_saved_model_not_in_place": ("state_saved_model_not_in_place",
                                                                 accuracies.index(max(accuracies))),
                  "first_fine_tuning_epochs_model_saved_state_not": ("model_saved_state_not", 1)}.get(where, (where, cut))
    if where in ("model_saved_state_not", "state_saved_model_not_in_place"):
        write = training.write_atomic

        def stop_around_the_state(path, text):
            at_cut = path.name == training.RESUME_STATE and json.loads(text)["epoch"] == cut
            if at_cut and where == "model_saved_state_not":
                raise KeyboardInterrupt
            write(path, text)
            if at_cut:
                raise KeyboardInterrupt

        monkeypatch.setattr(training, "write_atomic", stop_around_the_state)
    elif stop is None:
        save = training.SaveForResume.on_epoch_end

        def save_then_stop(self, epoch, logs=None):
            if epoch == cut:
                raise KeyboardInterrupt
            save(self, epoch, logs)

        monkeypatch.setattr(training.SaveForResume, "on_epoch_end", save_then_stop)
    else:
        monkeypatch.setattr(training, "_callbacks", lambda *a, **k: original(*a, **k) + [stop])
    run = tmp_path / "run"
    assert _fold0(tmp_path, kaggle_dir, run, patience, extra) == 130
    monkeypatch.undo()
    assert train.main(["--resume", str(run), "--fold", "0"]) == 0
    resumed = training.read_history(run / "fold0" / "history.csv")
    endings = {path: set(re.findall(rb"\r?\n", (path / "history.csv").read_bytes())) for path in (run / "fold0", whole)}
    assert endings[run / "fold0"] == endings[whole]  # rows kept by a resume keep their line ends
    assert [r["learning_rate"] for r in resumed] == [r["learning_rate"] for r in expected]
    assert [r["epoch"] for r in resumed] == list(range(EPOCHS))
    for a, b in zip(resumed, expected):
        assert a == pytest.approx(b, abs=1e-6), a["epoch"]
    for a, b in zip(models.load_model(run / "fold0" / "best.keras").weights,
                    models.load_model(whole / "best.keras").weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)
    assert not (run / "fold0" / training.RESUME_STATE).exists()  # removed with last.keras when the fold is done


def test_last_state_disagreeing_with_last_keras_is_refused(uninterrupted, kaggle_dir, tmp_path, monkeypatch, capsys):
    cut = _first_cut(training.read_history(uninterrupted(1) / "history.csv"))
    original = training._callbacks
    monkeypatch.setattr(training, "_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt(cut)])
    run = tmp_path / "run"
    assert _fold0(tmp_path, kaggle_dir, run, 1) == 130
    monkeypatch.undo()
    state = run / "fold0" / training.RESUME_STATE
    state.write_text(state.read_text().replace('"iterations": ', '"iterations": 1'))
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--fold", "0"]) == 2
    assert "disagree" in capsys.readouterr().err


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data is the TensorFlow backend's input")
def test_an_epochs_batch_order_does_not_depend_on_where_the_run_started():
    from brainmri.batches import make_tf_dataset

    images, labels = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10) % 2
    stream = [y for y in make_tf_dataset(images, labels, 2, 4, shuffle=True, seed=3, first_epoch=0).take(9)]
    later = [y for y in make_tf_dataset(images, labels, 2, 4, shuffle=True, seed=3, first_epoch=2).take(3)]
    order = lambda batches: np.concatenate([np.asarray(x).ravel() for x, _ in batches])  # noqa: E731
    assert order(stream[6:9]).tolist() == order(later).tolist()  # 3 batches of 4, 4, 2 per epoch
    assert order(stream[0:3]).tolist() != order(stream[3:6]).tolist()  # still reshuffled every epoch


def test_an_epochs_batch_order_does_not_depend_on_where_the_run_started_without_tensorflow():
    """The same for the PyDataset that JAX and PyTorch train on (it runs under TensorFlow too)."""
    from brainmri.batches import ArrayBatches

    images, labels = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10) % 2
    batches = ArrayBatches(images, labels, 2, 4, shuffle=True, seed=3, first_epoch=0)
    batches.on_epoch_end()
    batches.on_epoch_end()
    resumed = ArrayBatches(images, labels, 2, 4, shuffle=True, seed=3, first_epoch=2)
    assert batches.order.tolist() == resumed.order.tolist()


def test_a_best_checkpoint_left_by_an_unsaved_epoch_is_dropped(tmp_path):
    """An epoch that wrote its best checkpoint but died before last.keras and the resume state runs again on
    resume: its checkpoint must not survive as best.keras (the re-run may score lower)."""
    from brainmri import training
    from brainmri.config import Config

    (tmp_path / "best.keras").write_text("the best of a saved epoch")
    (tmp_path / training.BEST_PENDING).write_text("the best of the epoch that runs again")
    training._callbacks(Config(), tmp_path, [{"epoch": 0, "val_accuracy": 0.5}])
    assert not (tmp_path / training.BEST_PENDING).exists()
    assert (tmp_path / "best.keras").read_text() == "the best of a saved epoch"
