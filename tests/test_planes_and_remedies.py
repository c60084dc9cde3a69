"""Slice planes (estimator, planes.csv, the planes protocol, per-plane accuracy) and the on-the-fly remedies
for imbalance (augmentation layers, class weights)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import augment
import evaluate
import train
from brainmri import planes, splits
from brainmri.batches import augmentation_layers, make_batches
from brainmri.data import decode
from brainmri.errors import UserError
from brainmri.training import class_weights
from conftest import REAL_DATA

TINY = ["image_size=32", "backbone=small_cnn", "weights=none", "epochs=1", "folds=2", "batch_size=16"]


def test_planes_protocol_tests_on_other_planes_only():
    rng = np.random.default_rng(0)
    n = 60
    labels = np.tile([0, 1], n // 2)
    plane = np.array(["axial", "sagittal", "coronal"] * (n // 3))
    groups = np.arange(n)
    groups[1] = groups[0]  # an axial image that is a near-duplicate of a sagittal one
    plane[0], plane[1] = "sagittal", "axial"
    roles = splits.make_roles(labels, groups, [""] * n, "planes", 2, 0.1, True, 0, plane, ("axial",),
                              ("sagittal", "coronal"))
    assert set(plane[roles[:, 0] == "test"]) == {"sagittal", "coronal"}
    assert set(plane[np.isin(roles[:, 0], ["train", "val"])]) == {"axial"}
    assert (roles[1] == "excluded").all()  # its group reaches the test set
    with pytest.raises(UserError, match="no image of planes"):
        splits.make_roles(labels, groups, [""] * n, "planes", 2, 0.1, True, 0, np.full(n, "axial"), ("axial",),
                          ("sagittal",))
    del rng


def test_train_on_axial_test_on_the_rest_then_per_plane_accuracy(kaggle_dir, tmp_path):
    out = tmp_path / "out"
    assert train.main(["--set", f"data_dir={kaggle_dir}", f"output_dir={out}", f"cache_dir={tmp_path / 'c'}",
                       "protocol=planes", *TINY]) == 0
    (run,) = (out / "study").iterdir()
    rows = list(csv.DictReader(open(run / "splits.csv")))
    assert {r["plane"] for r in rows if r["fold0"] == "test"} == {"sagittal", "coronal"}
    assert {r["plane"] for r in rows if r["fold0"] in ("train", "val")} == {"axial"}
    assert evaluate.main([str(run)]) == 0
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    per_plane = summary["per_plane"]
    assert set(per_plane) == {"sagittal", "coronal"}
    assert sum(v["images"] for v in per_plane.values()) == summary["images"]
    assert "sagittal slices" in (run / "evaluation" / "report.md").read_text()


def test_planes_protocol_without_a_planes_file_is_one_line(data_copy, tmp_path, capsys):
    assert train.main(["--set", f"data_dir={data_copy}", f"output_dir={tmp_path}", "protocol=planes", *TINY]) == 2
    assert "planes file not found" in capsys.readouterr().err


def test_bad_planes_file(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("path,plane\na.png,oblique\n")
    with pytest.raises(UserError, match="unknown plane"):
        planes.read_planes(f)
    f.write_text("file,view\na.png,axial\n")
    with pytest.raises(UserError, match="columns path,plane"):
        planes.read_planes(f)


def test_estimate_planes_writes_a_csv_outside_the_data(kaggle_dir, tmp_path, capsys):
    out = tmp_path / "planes.csv"
    assert augment.main([str(kaggle_dir), "--estimate-planes", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(list(kaggle_dir.glob("T*/*/*.*"))) and {r["plane"] for r in rows} <= set(planes.PLANES)
    assert augment.main([str(kaggle_dir), "--estimate-planes", str(out)]) == 2  # no silent overwrite
    assert augment.main([str(kaggle_dir), "--estimate-planes", str(kaggle_dir / "planes2.csv")]) == 2
    assert not (kaggle_dir / "planes2.csv").exists()


def test_a_blank_image_is_a_clear_skip_and_a_flat_head_gets_no_nan_plane(tmp_path):
    """A picture of one grey level has no plane to estimate; a head region of one grey level has no symmetry to
    measure (NaN correlations gave a plane 'estimated' with probability nan)."""
    import warnings

    flat = np.zeros((100, 100, 3), np.uint8)
    flat[20:80, 30:70] = 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's 'invalid value encountered in divide' was printed raw
        assert np.isfinite(planes.plane_features(flat)).all()
        for level in (0, 255):
            with pytest.raises(ValueError, match="blank"):
                planes.plane_features(np.full((100, 100, 3), level, np.uint8))


@pytest.mark.parametrize("case, message", [
    ("a_users_file", "not a planes file written by augment.py"),
    ("a_hand_checked_planes_file", "not a planes file written by augment.py"),  # path,plane: a person's work
    ("a_folder", "is a folder"),
    ("no_such_folder", "folder not found"),
])
def test_estimate_planes_refuses_an_output_it_cannot_or_may_not_write_before_reading_any_image(
        kaggle_dir, tmp_path, capsys, monkeypatch, case, message):
    notes = tmp_path / "notes.txt"
    notes.write_text("path,plane\nTraining/a.png,axial\n" if case == "a_hand_checked_planes_file" else "mine")
    mine = notes.read_text()
    out = {"a_users_file": notes, "a_hand_checked_planes_file": notes, "a_folder": tmp_path, "no_such_folder": tmp_path / "nowhere" / "p.csv"}[case]
    monkeypatch.setattr(planes, "decode", lambda path: pytest.fail("an image was read before the output was checked"))
    assert augment.main([str(kaggle_dir), "--estimate-planes", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and notes.read_text() == mine


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="needs ../shared/datasets")
def test_estimator_on_the_hand_checked_real_slices():
    """The shipped estimator against the hand labels it was not fitted on (sample "check")."""
    labels = Path(__file__).resolve().parents[1] / "data" / "planes_handchecked.csv"
    rows = [r for r in csv.DictReader(open(labels)) if r["sample"] == "check"]
    assert {pl: sum(r["plane"] == pl for r in rows) >= 20 for pl in planes.PLANES} == dict.fromkeys(planes.PLANES, True)
    feats = np.stack([planes.plane_features(decode(REAL_DATA / r["path"])) for r in rows])
    pred, _ = planes.predict_planes(feats)
    accuracy = np.mean([p == r["plane"] for p, r in zip(pred, rows)])
    assert accuracy >= 0.9
    assert abs(accuracy - planes.load_estimator()["check"]["accuracy"]) < 1e-9


def test_augmentation_changes_training_batches_only():
    assert augmentation_layers() is None
    layers = augmentation_layers(rotation=20, shift=0.1, zoom=0.1, flip="horizontal", contrast=0.2, seed=0)
    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(8) % 4
    x, y = map(np.asarray, next(iter(make_batches(images, labels, 4, 8, augment=layers))))
    assert x.shape == (8, 32, 32, 3) and not np.allclose(x, images)
    assert np.array_equal(y.argmax(1), labels)
    plain, _ = next(iter(make_batches(images, labels, 4, 8)))
    assert np.array_equal(np.asarray(plain), images.astype(np.float32))


def test_balanced_class_weights():
    w = class_weights(np.array([0] * 30 + [1] * 10 + [2] * 20), 4)
    assert w[0] == pytest.approx(60 / (3 * 30)) and w[1] == pytest.approx(60 / (3 * 10)) and w[3] == 1.0


def test_training_with_augmentation_and_class_weights(kaggle_dir, tmp_path):
    assert train.main(["--set", f"data_dir={kaggle_dir}", f"output_dir={tmp_path}", f"cache_dir={tmp_path / 'c'}",
                       "augment_rotation=15", "augment_shift=0.1", "augment_flip=horizontal",
                       "class_weight=balanced", *TINY]) == 0
    (run,) = (tmp_path / "study").iterdir()
    assert "class weights" in (run / "train.log").read_text()


@pytest.mark.parametrize("override, key", [("augment_flip=diagonal", "augment_flip"),
                                           ("augment_shift=2", "augment_shift"),
                                           ("test_planes=[axial]", "train_planes")])
def test_bad_remedy_keys(override, key, capsys, kaggle_dir):
    extra = ["protocol=planes"] if "planes" in override else []
    assert train.main(["--set", f"data_dir={kaggle_dir}", override, *extra, *TINY]) == 2
    assert key in capsys.readouterr().err
