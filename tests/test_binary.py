"""binary_task.py: tumor vs no tumor with a sigmoid unit, validation threshold, external folders, bad input."""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

import binary_task
from brainmri import binary
from brainmri.errors import UserError

TINY = ["backbone=small_cnn", "weights=none", "image_size=32", "epochs=1", "folds=2", "batch_size=16"]


@pytest.fixture()
def yes_no(kaggle_dir, tmp_path):
    """An external folder in another naming: yes/ and no/, upper-case extensions, spaces, grey, odd sizes."""
    out = tmp_path / "external"
    for cls in (kaggle_dir / "Training").iterdir():
        dest = out / ("no" if cls.name == "no_tumor" else "yes")
        dest.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(sorted(cls.glob("*.png"))[:6]):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(dest / f"{cls.name} scan {i}.JPG"), cv2.resize(img, (90, 70)))
    return out


def test_external_task_reports_copies_and_threshold(kaggle_dir, yes_no, tmp_path):
    assert binary_task.main(["external", "--external-test", str(yes_no), "--set", f"data_dir={kaggle_dir}",
                             f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'c'}", *TINY]) == 0
    (run,) = (tmp_path / "out" / "binary-external").iterdir()
    summary = json.loads((run / "binary" / "binary_summary.json").read_text())
    m = summary["at_validation_threshold"]
    assert m["images"] == 24 and m["no_tumor"] == 6
    # every external image was made from a training image: all are flagged as copies
    assert summary["near_duplicates_in_training"] == 24 and summary["without_copies_in_training"] is None
    rows = list(csv.DictReader(open(run / "binary" / "test_predictions.csv")))
    labels = np.array([r["true"] == "tumor" for r in rows], int)
    p = np.array([float(r["p_tumor"]) for r in rows])
    tn, fp, fn, tp = confusion_matrix(labels, (p >= m["threshold"]).astype(int), labels=[0, 1]).ravel()
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (tp, tn, fp, fn)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p))
    val_labels, val_p = binary.validation_predictions(run)
    assert m["threshold"] == pytest.approx(binary.choose_threshold(val_labels, val_p))  # from validation only
    assert (run / "binary" / "report.md").is_file() and (run / "binary" / "figures" / "roc.png").is_file()
    with open(run / "splits.csv") as f:
        assert {r["fold0"] for r in csv.DictReader(f)} == {"train", "val"}  # protocol all: no test split here


def test_split_task_with_a_sigmoid_head(kaggle_dir, tmp_path):
    assert binary_task.main(["split", "--set", f"data_dir={kaggle_dir}", f"output_dir={tmp_path / 'out'}",
                             f"cache_dir={tmp_path / 'c'}", *TINY]) == 0
    (run,) = (tmp_path / "out" / "binary-split").iterdir()
    from brainmri.models import load_model

    model = load_model(run / "fold0" / "best.keras", compile=False)
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    assert json.loads((run / "classes.json").read_text()) == ["no_tumor", "tumor"]
    summary = json.loads((run / "binary" / "binary_summary.json").read_text())
    assert summary["at_validation_threshold"]["images"] == sum(
        r["fold0"] == "test" for r in csv.DictReader(open(run / "splits.csv")))
    wrong = list(csv.DictReader(open(run / "binary" / "misclassified.csv")))
    assert not wrong or (run / "gradcam" / "grid.png").is_file()  # maps of the misclassified, via gradcam.py


def test_external_only_task_on_a_yes_no_folder(yes_no, tmp_path):
    assert binary_task.main(["external-only", "--external-test", str(yes_no), "--gradcam-limit", "0", "--set",
                             f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'c'}", "test_fraction=0.25",
                             *TINY]) == 0


@pytest.mark.parametrize("case, message", [
    ("one_class", "must hold two class folders"),
    ("no_flag", "needs --external-test"),
    ("unnamed", "cannot tell which of"),
])
def test_bad_external_input(kaggle_dir, yes_no, tmp_path, capsys, case, message):
    folder = yes_no
    if case == "one_class":
        shutil.rmtree(yes_no / "no")
    if case == "unnamed":
        (yes_no / "no").rename(yes_no / "other")
    argv = ["external", *([] if case == "no_flag" else ["--external-test", str(folder)]), "--set",
            f"data_dir={kaggle_dir}", f"output_dir={tmp_path / 'out'}", *TINY]
    assert binary_task.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gradcam_threshold_needs_a_sigmoid_model(trained_run, capsys):
    import gradcam

    assert gradcam.main([str(trained_run), "--threshold", "0.3"]) == 2
    assert "one sigmoid output" in capsys.readouterr().err


def test_threshold_is_youden_on_validation(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.6, 0.8, 0.9])
    t = binary.choose_threshold(labels, p)
    m = binary.binary_metrics(labels, p, t)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(2 / 3)
    for name in ("yes", "no", "maybe"):
        (tmp_path / name).mkdir()
    with pytest.raises(UserError, match="two class folders"):
        binary.load_external(tmp_path, 32)
