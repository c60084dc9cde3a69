"""binary_task.py: tumor vs no tumor with a sigmoid unit, validation threshold, external folders, bad input."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

import binary_task
from brainmri import binary, metrics
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
    thresholds = binary.fold_thresholds(run)  # each fold's own, from its validation predictions only
    assert m["threshold"] == pytest.approx(np.mean(list(thresholds.values())))
    assert [r["threshold"] for r in summary["per_fold"]] == pytest.approx([thresholds[0], thresholds[1]])
    assert summary["other_source"] and "does not transfer" in (run / "binary" / "report.md").read_text()
    assert (run / "binary" / "report.md").is_file() and (run / "binary" / "figures" / "roc.png").is_file()
    with open(run / "splits.csv") as f:
        assert {r["fold0"] for r in csv.DictReader(f)} == {"train", "val"}  # protocol all: no test split here


def test_split_task_with_a_sigmoid_head(kaggle_dir, tmp_path, monkeypatch):
    from brainmri import backend

    batches, predict = [], backend.predict
    monkeypatch.setattr(backend, "predict", lambda model, images, batch_size: batches.append(batch_size)
                        or predict(model, images, batch_size))
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
    assert not wrong or (run / "gradcam" / "grid.png").is_file()  # maps of the misclassified, as gradcam.py draws
    assert set(batches) == {16}  # every prediction at the run's batch_size (the test images' was a fixed 32)


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
    m = metrics.binary_metrics(labels, p, t)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(2 / 3)
    for name in ("yes", "no", "maybe"):
        (tmp_path / name).mkdir()
    with pytest.raises(UserError, match="two class folders"):
        binary.check_external(tmp_path)


def _fake_binary_run(folder, val: dict) -> Path:
    """A run folder holding only each fold's validation predictions: {fold: (labels, P(tumor))}."""
    for k, (labels, p) in val.items():
        (folder / f"fold{k}").mkdir(parents=True)
        with open(folder / f"fold{k}" / "val_predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "subset", "true", "pred", "p_no_tumor", "p_tumor"])
            for i, (y, pt) in enumerate(zip(labels, p)):
                w.writerow([f"v{k}_{i}.png", "", "tumor" if y else "no_tumor", "", 1 - pt, pt])
    return folder


def test_each_fold_model_is_cut_at_its_own_validation_threshold(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    val = {0: (y, np.array([0.80, 0.82, 0.84, 0.86, 0.90, 0.92, 0.94, 0.96])),  # fold 0's outputs live high,
           1: (y, np.array([0.10, 0.12, 0.14, 0.16, 0.20, 0.22, 0.24, 0.26]))}  # fold 1's low
    run = _fake_binary_run(tmp_path / "run", val)
    thresholds = binary.fold_thresholds(run)
    assert thresholds == {k: pytest.approx(binary.choose_threshold(*v)) for k, v in val.items()}
    fold_p = {k: p + 0.01 for k, (_, p) in val.items()}  # the test images, as each fold model sees them
    summary = binary.write_binary_report(tmp_path / "binary", "split", "hold-out", [f"t{i}" for i in range(8)], y,
                                         fold_p, np.zeros(8, bool), thresholds, notes=[])
    for row in summary["per_fold"]:
        assert row["threshold"] == pytest.approx(thresholds[row["fold"]])
        assert row["at_validation_threshold"]["sensitivity"] == row["at_validation_threshold"]["specificity"] == 1
    ens = summary["at_validation_threshold"]
    assert ens["threshold"] == pytest.approx(np.mean(list(thresholds.values())))
    assert ens["sensitivity"] == ens["specificity"] == 1
    # the old design: one threshold from the pooled single-model outputs, applied to the mean of the models
    pooled = binary.choose_threshold(*binary.validation_predictions(run))
    old = metrics.binary_metrics(y, np.mean(list(fold_p.values()), axis=0), pooled)
    assert min(old["sensitivity"], old["specificity"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "binary" / "test_predictions.csv")))
    assert [float(r["p_tumor_fold1"]) for r in rows] == pytest.approx(fold_p[1])


def test_report_on_another_source_says_the_threshold_does_not_transfer(tmp_path):
    y = np.array([0] * 10 + [1] * 10)
    p = np.r_[np.linspace(0.05, 0.45, 10), np.linspace(0.31, 0.91, 10)]  # tumors score lower on this scanner
    summary = binary.write_binary_report(tmp_path / "binary", "external", "external folder",
                                         [f"e{i}" for i in range(20)], y, {0: p, 1: p}, np.zeros(20, bool),
                                         {0: 0.87, 1: 0.87}, notes=[], other_source=True)
    at_t, at_half = summary["at_validation_threshold"], summary["at_0.5"]
    assert at_t["threshold"] == pytest.approx(0.87) and at_t["sensitivity"] == pytest.approx(0.1)
    assert at_half["sensitivity"] == pytest.approx(0.7) and summary["other_source"]
    report = (tmp_path / "binary" / "report.md").read_text()
    assert "does not transfer across sources" in report
    assert "| sensitivity (tumors found) | 0.1000 | 0.7000 |" in report  # both operating points, side by side
    assert "| 0 | 0.8700 |" in report  # the per-fold table


def test_an_interrupted_binary_run_resumes_where_it_stopped(kaggle_dir, tmp_path, monkeypatch, capsys):
    """binary_task.py --resume RUN: the finished fold is not trained again, the rest is done and the report
    written, as train.py --resume does (reproduce.py resumes an interrupted binary step so)."""
    from brainmri import crossval

    run, train_fold = tmp_path / "run", crossval.train_fold

    def interrupted_in_fold_1(cfg, ds, roles, fold, *rest):
        if fold == 1:
            raise KeyboardInterrupt
        return train_fold(cfg, ds, roles, fold, *rest)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crossval, "train_fold", interrupted_in_fold_1)
    assert binary_task.main(["split", "--run-dir", str(run), "--gradcam-limit", "0", "--set", f"data_dir={kaggle_dir}",
                             f"cache_dir={tmp_path / 'c'}", *TINY]) == 130
    assert f"binary_task.py split --resume {run}" in capsys.readouterr().err  # what to type, with the folder
    assert (run / "fold0" / "done.json").is_file() and not (run / "fold1" / "done.json").exists()
    assert not (run / "binary").exists()
    monkeypatch.setattr(crossval, "train_fold", train_fold)
    trained_at = (run / "fold0" / "best.keras").stat().st_mtime_ns
    from brainmri import plots

    monkeypatch.setattr(plots, "binary_roc", interrupted)  # Ctrl-C while the report is written
    assert binary_task.main(["split", "--resume", str(run), "--gradcam-limit", "0"]) == 130
    assert not (run / "binary").exists() and not list(run.glob(".binary*"))  # no half of it
    monkeypatch.undo()
    assert binary_task.main(["split", "--resume", str(run)]) == 0  # as printed: the run's --gradcam-limit 0 holds
    assert not list(run.glob("gradcam*"))
    assert (run / "fold0" / "best.keras").stat().st_mtime_ns == trained_at  # not trained again
    assert (run / "fold1" / "done.json").is_file() and (run / "binary" / "report.md").is_file()
    summary = json.loads((run / "binary" / "binary_summary.json").read_text())
    assert len(summary["per_fold"]) == 2
    (run / "gradcam").mkdir()  # the user's own gradcam.py maps of this run: not the task's
    assert binary_task.main(["split", "--resume", str(run), "--gradcam-limit", "32"]) == 0  # the maps, asked now
    made, report = sorted(p.name for p in run.glob("gradcam*")), (run / "binary" / "report.md").read_text()
    wrong = list(csv.DictReader(open(run / "binary" / "misclassified.csv")))
    assert made == (["gradcam", "gradcam-2"] if wrong else ["gradcam"])
    assert binary_task.main(["split", "--resume", str(run)]) == 0  # a finished run: nothing is made twice
    assert sorted(p.name for p in run.glob("gradcam*")) == made
    assert (run / "binary" / "report.md").read_text() == report


def test_an_external_run_counts_its_skipped_files_keeps_its_folder_and_resumes_with_nothing_more(kaggle_dir, yes_no,
                                                                                                tmp_path, capsys):
    """The external folder's unused files are counted in the report; the folder is recorded: --resume refuses
    another, and needs none (what the Ctrl-C message prints, python binary_task.py TASK --resume RUN, must work
    as it is, also for a run named with --set experiment=...)."""
    (yes_no / "yes" / "text.png").write_text("not an image")
    run = tmp_path / "run"
    assert binary_task.main(["external", "--external-test", str(yes_no), "--run-dir", str(run), "--gradcam-limit", "0",
                             "--set", f"data_dir={kaggle_dir}", "experiment=my-run", f"cache_dir={tmp_path / 'c'}",
                             *TINY]) == 0
    summary = json.loads((run / "binary" / "binary_summary.json").read_text())
    assert summary["skipped_files"] == 1
    assert [r["path"] for r in csv.DictReader(open(run / "binary" / "skipped.csv"))] == ["yes/text.png"]
    report = (run / "binary" / "report.md").read_text()
    assert "1 file skipped" in report
    other = tmp_path / "other"
    shutil.copytree(yes_no, other)
    assert binary_task.main(["external", "--external-test", str(other), "--resume", str(run)]) == 2
    assert "was tested on the external folder" in capsys.readouterr().err
    assert (run / "binary" / "report.md").read_text() == report
    assert binary_task.main(["external", "--resume", str(run), "--gradcam-limit", "0"]) == 0


def test_a_run_inside_its_external_test_folder_is_refused(kaggle_dir, yes_no, tmp_path, capsys):
    """Its figures would be scored as test images of a class on the next run or resume."""
    run = yes_no / "yes" / "run"
    assert binary_task.main(["external", "--external-test", str(yes_no), "--run-dir", str(run), "--set",
                             f"data_dir={kaggle_dir}", *TINY]) == 2
    assert "inside the external test folder" in capsys.readouterr().err and not run.exists()


def test_an_external_only_run_resumes_with_nothing_more(yes_no, tmp_path):
    run = tmp_path / "run"
    assert binary_task.main(["external-only", "--external-test", str(yes_no), "--run-dir", str(run), "--gradcam-limit",
                             "0", "--set", "experiment=my-run", "test_fraction=0.25", f"cache_dir={tmp_path / 'c'}",
                             *TINY]) == 0
    assert binary_task.main(["external-only", "--resume", str(run), "--gradcam-limit", "0"]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--set", "epochs=3"], "drop --config/--set"),
    (["--config", "configs/binary.yaml"], "drop --config/--set"),
    (["--run-dir", "elsewhere"], "not both"),
])
def test_resume_takes_the_saved_config_only(tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: binary\nexperiment: binary-split\n")
    assert binary_task.main(["split", "--resume", str(run), *extra]) == 2
    assert message in capsys.readouterr().err


def test_resume_refuses_a_folder_that_is_no_binary_run_of_the_task(tmp_path, capsys):
    assert binary_task.main(["split", "--resume", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: binary\nexperiment: binary-split\n")
    assert binary_task.main(["planes", "--resume", str(run)]) == 2
    assert "task 'split'" in capsys.readouterr().err
    (run / "config.yaml").write_text("experiment: mine\n")  # a four-class run
    assert binary_task.main(["split", "--resume", str(run)]) == 2
    assert "not a binary_task.py run" in capsys.readouterr().err
