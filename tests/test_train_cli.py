"""The real train.py, end to end on tiny synthetic data: run folder, fold jobs, aggregate, resume, bad input."""

import csv
import json
import shutil

import cv2
import keras
import pytest

import train
from brainmri import training
from brainmri.synthetic import synth_image

TINY = ["image_size=32", "backbone=small_cnn", "weights=none", "epochs=1", "folds=2", "batch_size=16"]


def _run(tmp_path, data, *extra, argv=()):
    return train.main(["--set", f"data_dir={data}", f"output_dir={tmp_path / 'out'}",
                       f"cache_dir={tmp_path / 'cache'}", *TINY, *extra, *argv])


def _only_run(tmp_path):
    (run,) = (tmp_path / "out" / "study").iterdir()
    return run


def test_end_to_end_writes_the_whole_run_folder(tmp_path, kaggle_dir):
    assert _run(tmp_path, kaggle_dir) == 0
    run = _only_run(tmp_path)
    for name in ("config.yaml", "env.json", "train.log", "audit.json", "splits.csv", "classes.json",
                 "data_summary.csv", "skipped.csv", "cv_summary.json", "cv_summary.csv", "cv_summary.md",
                 "figures/curves_accuracy_loss.png", "figures/curves_precision_recall.png"):
        assert (run / name).is_file(), name
    for k in (0, 1):
        for name in ("best.keras", "history.csv", "done.json", "test_predictions.csv", "val_predictions.csv"):
            assert (run / f"fold{k}" / name).is_file(), (k, name)
        assert not (run / f"fold{k}" / "last.keras").exists()
    summary = json.loads((run / "cv_summary.json").read_text())
    assert summary["complete"] and set(summary["mean"]) >= {"val_accuracy", "val_f1", "test_accuracy"}
    with open(run / "splits.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["fold0"] for r in rows} == {"train", "val", "test"}
    env = json.loads((run / "env.json").read_text())
    assert env["keras"] == keras.__version__ and "numpy" in env


def test_two_runs_never_share_a_folder(tmp_path, kaggle_dir):
    assert _run(tmp_path, kaggle_dir, "folds=2", "epochs=1", argv=["--audit-only"]) == 0
    assert _run(tmp_path, kaggle_dir, argv=["--audit-only"]) == 0
    assert len(list((tmp_path / "out" / "audit").iterdir())) == 2


def test_fold_jobs_then_aggregate(tmp_path, kaggle_dir):
    run = tmp_path / "out" / "shared-run"
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run), "--fold", "1"]) == 0
    assert not json.loads((run / "cv_summary.json").read_text())["complete"]
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run), "--fold", "0"]) == 0
    assert train.main(["--aggregate", str(run)]) == 0
    summary = json.loads((run / "cv_summary.json").read_text())
    assert summary["complete"] and summary["folds"] == [0, 1]
    assert _run(tmp_path, kaggle_dir, "epochs=2", argv=["--run-dir", str(run), "--fold", "0"]) == 2  # other config


def test_resume_continues_an_interrupted_fold(tmp_path, kaggle_dir, monkeypatch):
    run = tmp_path / "out" / "resumed"
    original = training._callbacks

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_callbacks", lambda *a: original(*a) + [StopAfterFirstEpoch()])
    assert _run(tmp_path, kaggle_dir, "epochs=2", argv=["--run-dir", str(run)]) == 130
    assert (run / "fold0" / "last.keras").is_file() and not (run / "fold0" / "done.json").exists()
    monkeypatch.setattr(training, "_callbacks", original)
    assert train.main(["--resume", str(run)]) == 0
    history = training.read_history(run / "fold0" / "history.csv")
    assert [r["epoch"] for r in history] == [0, 1]  # epoch 0 was not trained again
    done_before = (run / "fold0" / "done.json").stat().st_mtime_ns
    assert train.main(["--resume", str(run)]) == 0  # everything done: nothing retrained
    assert (run / "fold0" / "done.json").stat().st_mtime_ns == done_before


@pytest.mark.parametrize("argv, message", [
    (["--set", "epoch=3"], "unknown config key 'epoch'"),
    (["--set", "data_dir=/nonexistent/data"], "data folder not found: /nonexistent/data; download it with: kaggle"),
    (["--config", "missing.yaml"], "config file not found"),
    (["--fold", "7"], "--fold 7 is out of range"),
    (["--resume", "/nonexistent/run"], "is not a run folder"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ and no configs/ here: the defaults apply
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err


def test_a_comparison_plan_is_refused_with_the_script_that_runs_it(capsys):
    assert train.main(["--config", "configs/plans/backbones.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: configs/plans/backbones.yaml is a comparison plan, not a run config: run it with "
                   "python compare_backbones.py --config configs/plans/backbones.yaml")


def test_missing_weights_file(capsys, tmp_path, kaggle_dir):
    assert _run(tmp_path, kaggle_dir, "weights=/nonexistent/b0.h5", "backbone=efficientnetb0") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: weights file not found: /nonexistent/b0.h5 (config key 'weights' takes imagenet, none or a file)"
    assert not (tmp_path / "out").exists()  # no run folder for a run that never started


def test_no_data_folder_yet_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main([]) == 2
    err = capsys.readouterr().err
    assert "data folder not found: data" in err and "configs/demo.yaml" in err
    (tmp_path / "data").mkdir()  # the repository's data/ holds only its README
    (tmp_path / "data" / "README.md").write_text("put the data here")
    assert train.main([]) == 2
    err = capsys.readouterr().err
    assert "no class folders in data" in err and "kaggle datasets download" in err


@pytest.mark.parametrize("change, job", [("add", "resume"), ("remove", "fold"), ("relabel", "resume"),
                                         ("replace", "resume")])
def test_a_changed_data_folder_is_refused_by_later_jobs(tmp_path, data_copy, capsys, change, job):
    """Finished folds were trained on the saved splits: new splits would test on images they trained on."""
    run = tmp_path / "out" / "shared"
    assert _run(tmp_path, data_copy, argv=["--run-dir", str(run), "--fold", "0"]) == 0
    saved = (run / "splits.csv").read_bytes()
    glioma = data_copy / "Training" / "glioma_tumor"
    if change == "add":
        img, _ = synth_image(12345, "glioma_tumor", "axial", 64)
        cv2.imwrite(str(glioma / "new_scan.png"), img)
    elif change == "remove":
        (glioma / "gl_0005.png").unlink()
    elif change == "replace":  # another image under the same name: its group and role were another image's
        shutil.copyfile(glioma / "gl_0006.png", glioma / "gl_0005.png")
    else:
        shutil.move(glioma / "gl_0005.png", data_copy / "Training" / "no_tumor" / "gl_0005.png")
    capsys.readouterr()
    argv = ["--resume", str(run)] if job == "resume" else ["--run-dir", str(run), "--fold", "1"]
    assert (train.main(argv) if job == "resume" else _run(tmp_path, data_copy, argv=argv)) == 2
    err = capsys.readouterr().err.strip()
    expected = {"add": "1 images added, 0 removed", "remove": "0 images added, 1 removed",
                "relabel": "1 images added, 1 removed", "replace": "1 changed content"}[change]
    assert err.startswith("error: the data changed since") and expected in err and "\n" not in err
    assert "first: " in err and ("gl_0005.png" in err or "new_scan.png" in err)
    assert (run / "splits.csv").read_bytes() == saved
    assert not (run / "fold1").exists()


def test_later_fold_jobs_reuse_the_saved_splits(tmp_path, data_copy):
    """A fold job on another machine must not re-split: the saved splits.csv is what finished folds used, even
    where near-duplicate scores would round differently there (simulated: the saved groups are edited)."""
    run = tmp_path / "out" / "shared"
    assert _run(tmp_path, data_copy, argv=["--run-dir", str(run), "--fold", "0"]) == 0
    lines = (run / "splits.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("group")
    edited = [lines[0]] + [",".join(r[:col] + ["7"] + r[col + 1:]) for r in (ln.split(",") for ln in lines[1:])]
    (run / "splits.csv").write_text("\n".join(edited) + "\n")
    saved = (run / "splits.csv").read_bytes()
    assert _run(tmp_path, data_copy, argv=["--run-dir", str(run), "--fold", "1"]) == 0
    assert (run / "splits.csv").read_bytes() == saved and (run / "fold1" / "done.json").is_file()


def test_training_curves_are_logged_for_tensorboard(trained_run):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tensorboard")
    assert list((trained_run / "tensorboard" / "fold0").rglob("events.out.tfevents.*"))


def test_a_run_dir_that_holds_someone_elses_files_is_refused_and_left_alone(tmp_path, kaggle_dir, capsys):
    mine = tmp_path / "my project"
    mine.mkdir()
    for name in ("audit.json", "classes.json", "env.json"):
        (mine / name).write_text("mine\n")
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(mine), "--audit-only"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert all((mine / name).read_text() == "mine\n" for name in ("audit.json", "classes.json", "env.json"))
    assert sorted(p.name for p in mine.iterdir()) == ["audit.json", "classes.json", "env.json"]
    scheduled = tmp_path / "scheduled"
    scheduled.mkdir()  # a job scheduler's log written there first (#SBATCH --output=<run>/slurm-%a.out) is fine
    (scheduled / "slurm-0.out").write_text("log\n")
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(scheduled), "--audit-only"]) == 0
    assert (scheduled / "slurm-0.out").read_text() == "log\n" and (scheduled / "config.yaml").is_file()


def test_one_class_or_a_share_too_small_to_split_is_a_one_line_error(tmp_path, kaggle_dir, capsys):
    flat = tmp_path / "one"
    shutil.copytree(kaggle_dir / "Training" / "glioma_tumor", flat / "glioma_tumor")
    assert _run(tmp_path, flat, "classes=[]") == 2
    assert "only one class" in capsys.readouterr().err
    assert _run(tmp_path, kaggle_dir, "subset_fraction=0.01") == 2
    err = capsys.readouterr().err
    assert "subset_fraction" in err and err.count("\n") == 1


def test_a_result_folder_written_whole_takes_the_next_free_name_and_leaves_nothing_hidden(tmp_path):
    from brainmri.runs import write_whole

    first, _ = write_whole(tmp_path / "evaluation", lambda folder: (folder / "report.md").write_text("1"))
    second, answer = write_whole(tmp_path / "evaluation", lambda folder: (folder / "report.md").write_text("2") and 7)
    assert (first.name, second.name, answer) == ("evaluation", "evaluation-2", 7)
    assert (second / "report.md").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == [
        "evaluation", "evaluation-2"]


@pytest.mark.parametrize("where", ["the_data_folder", "a_class_folder", "the_training_folder"])
def test_a_run_folder_inside_the_data_is_refused_and_the_data_left_alone(data_copy, tmp_path, capsys, where):
    """--run-dir inside the data made the run's figures training images of a class (or, in a flat layout, the
    run folder a class), as output_dir inside it did before it was refused."""
    run = {"the_data_folder": data_copy, "a_class_folder": data_copy / "Training" / "glioma_tumor" / "run",
           "the_training_folder": data_copy / "Training"}[where]
    before = sorted(str(p) for p in data_copy.rglob("*"))
    assert train.main(["--run-dir", str(run), "--set", f"data_dir={data_copy}", "image_size=32", "backbone=small_cnn",
                       "weights=none", "epochs=1", "folds=2"]) == 2
    assert "lies inside the data folder" in capsys.readouterr().err
    assert sorted(str(p) for p in data_copy.rglob("*")) == before


def test_a_run_interrupted_once_its_splits_are_written_resumes_into_a_complete_folder(kaggle_dir, tmp_path,
                                                                                      monkeypatch):
    """splits.csv is what --resume reuses instead of splitting again: every other file of the data step must
    be written by then, or a resumed run never gets them (evaluate.py then needs classes.json)."""
    from brainmri import splits

    write_splits = splits.write_splits

    def interrupted_after(*args, **kwargs):
        write_splits(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(splits, "write_splits", interrupted_after)
    run = tmp_path / "run"
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run)]) == 130
    monkeypatch.setattr(splits, "write_splits", write_splits)
    assert train.main(["--resume", str(run)]) == 0
    for name in ("classes.json", "data_summary.csv", "skipped.csv", "audit.json", "splits.csv"):
        assert (run / name).is_file(), name


def test_a_fold_another_job_is_training_is_refused_and_a_dead_jobs_claim_taken_over(tmp_path, kaggle_dir, capsys):
    """Two jobs on one fold (a requeued cluster job, a command run twice) wrote over each other's checkpoints:
    a traceback in one, a fold of mixed epochs in the other."""
    import os
    import socket
    import subprocess
    import sys

    run = tmp_path / "run"
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run), "--fold", "0"]) == 0
    claim = run / "fold1" / training.FOLD_CLAIM
    claim.parent.mkdir()
    claim.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live job
    capsys.readouterr()
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run), "--fold", "1"]) == 2
    err = capsys.readouterr().err
    assert "fold 1" in err and "another job" in err and str(claim) in err and err.count("\n") == 1
    assert claim.is_file() and not (run / "fold1" / "history.csv").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))  # a job killed on this machine
    assert _run(tmp_path, kaggle_dir, argv=["--run-dir", str(run), "--fold", "1"]) == 0
    assert (run / "fold1" / "done.json").is_file() and not claim.exists()
