"""reproduce.py end to end on a tiny plan (synthetic data, 32 px, 1 epoch, 2 folds): steps in order, each in
its own folder, resumable, skipped with one line when the external folder is missing, and the report."""

import json
import re
import shutil
from pathlib import Path

import pytest

import reproduce
from brainmri import study
from brainmri.errors import UserError

REPO = Path(reproduce.__file__).resolve().parent
TINY = """
data: {synthetic_per_class: 16, synthetic_size: 64}
config: configs/cpu-quick.yaml
binary_config: configs/binary.yaml
set: {backbone: small_cnn, weights: none, image_size: 32, epochs: 1, folds: 2, batch_size: 16}
steps:
  - {name: data, run: data, report: data}
  - {name: cv_adam_random, run: train, set: {split: random}, report: cv}
  - {name: evaluate_random, run: evaluate, of: cv_adam_random, report: test}
  - {name: gradcam_misclassified, run: gradcam, of: evaluate_random, images: misclassified, limit: 4,
     report: gradcam}
  - {name: binary_external, run: binary, task: external, report: binary}
"""
STEPS = ["data", "cv_adam_random", "evaluate_random", "gradcam_misclassified"]


def _plan(tmp_path, text=TINY) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def _done(out: Path) -> dict[str, int]:
    """mtime of every done.json, by step name."""
    return {p.parent.name.split("-", 1)[1]: p.stat().st_mtime_ns for p in out.glob("*/done.json")}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny plan run once: (study folder, the lines it printed)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("study")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = reproduce.main(["--plan", str(_plan(tmp)), "--synthetic", "--out", str(tmp / "out")])
    assert rc == 0, printed.getvalue()
    return tmp / "out", printed.getvalue().splitlines()


def test_the_plan_runs_every_step_in_its_own_folder(tiny_study):
    out, lines = tiny_study
    assert sorted(_done(out)) == sorted(STEPS)
    assert [p.name for p in sorted(out.glob("0*"))][:4] == [f"{i + 1:02d}-{n}" for i, n in enumerate(STEPS)]
    assert (out / "02-cv_adam_random" / "run" / "cv_summary.json").is_file()
    evaluation = json.loads((out / "03-evaluate_random" / "done.json").read_text())["outputs"]["evaluation"]
    assert (out / evaluation / "test" / "summary.json").is_file()
    progress = [ln for ln in lines if re.match(r"\[\d/5\]", ln)]
    assert len(progress) == 5 and all("left" in ln for ln in progress)


def test_a_missing_external_folder_skips_that_step_with_one_line(tiny_study):
    out, lines = tiny_study
    mentions = [ln for ln in lines if "binary_external" in ln]
    assert len(mentions) == 1 and "skipped: no external folder" in mentions[0]
    assert not (out / "05-binary_external" / "done.json").exists()


def test_the_report_is_one_self_contained_html_and_a_markdown_file(tiny_study):
    out, _ = tiny_study
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## The study's numbers beside this run's" in md and "98%" in md
    for section in ("1. The data", "2. Cross-validation", "3. The hold-out test", "5. Grad-CAM", "9. Tumor against"):
        assert section in md and section in page
    assert md.index("1. The data") < md.index("3. The hold-out test") < md.index("9. Tumor against")
    assert "skipped: no `--external` folder" in md
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing outside the file
    assert "@media print" in page


def test_an_interrupted_plan_resumes_without_redoing_finished_steps(tiny_study, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_study[0], out)
    before = _done(out)
    gradcam = out / "04-gradcam_misclassified"
    (gradcam / "done.json").unlink()  # as if interrupted in this step
    (gradcam / "half-written.png").write_text("partial")
    assert reproduce.main(["--plan", str(_plan(tmp_path)), "--synthetic", "--out", str(out)]) == 0
    after, printed = _done(out), capsys.readouterr().out
    assert {k: after[k] for k in STEPS[:3]} == {k: before[k] for k in STEPS[:3]}  # not redone
    assert printed.count("already done, kept") == 3
    assert after["gradcam_misclassified"] > before["gradcam_misclassified"]
    assert not (gradcam / "half-written.png").exists()  # the partial folder was replaced


def test_an_interrupted_training_step_continues_with_resume_and_its_dependants_are_redone(tiny_study, tmp_path,
                                                                                          capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_study[0], out)
    before = _done(out)
    (out / "02-cv_adam_random" / "done.json").unlink()
    assert reproduce.main(["--plan", str(_plan(tmp_path)), "--synthetic", "--out", str(out)]) == 0
    after = _done(out)
    assert after["data"] == before["data"]
    assert all(after[k] > before[k] for k in STEPS[1:])
    assert "train.py --resume" in (out / "02-cv_adam_random" / "step.log").read_text()
    assert "redone: cv_adam_random changed since" in capsys.readouterr().out


def test_a_failing_step_stops_the_plan_with_one_line_naming_it(tmp_path, capsys):
    plan = TINY.replace("set: {split: random}", "set: {split: random, weights: /no/such/weights.h5}")
    rc = reproduce.main(["--plan", str(_plan(tmp_path, plan)), "--synthetic", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: step 'cv_adam_random' failed (train.py exited with 2)") and "step.log" in err[0]
    assert not (tmp_path / "out" / "02-cv_adam_random" / "done.json").exists()


@pytest.mark.parametrize("plan", ["configs/study.yaml", "configs/study-quick.yaml"])
def test_the_shipped_plans_are_valid_and_cover_the_study(plan):
    loaded = study.load_plan(REPO / plan, REPO)
    sections = {s.options.get("report") for s in loaded.steps}
    assert sections >= {"data", "cv", "test", "optimizers", "gradcam", "balance", "planes", "backbones", "binary"}
    splits = {(s.options.get("set") or {}).get("split") for s in loaded.steps if s.options.get("report") == "cv"}
    assert splits == {"random", "group"}  # the key experiment under both splits
    assert {s.options["task"] for s in loaded.steps if s.kind == "binary"} == {"split", "external", "planes"}


def test_a_plan_step_that_reads_a_later_or_unknown_step_is_refused(tmp_path):
    bad = TINY.replace("of: cv_adam_random", "of: cv_later")
    with pytest.raises(UserError, match="step 'evaluate_random': of: 'cv_later' is not an earlier step"):
        study.load_plan(_plan(tmp_path, bad), REPO)
    with pytest.raises(UserError, match="step 'cv_adam_random'.*unknown config key 'epoch'"):
        study.load_plan(_plan(tmp_path, TINY.replace("{split: random}", "{split: random, epoch: 3}")), REPO)


def test_a_study_folder_refuses_another_plan(tiny_study, tmp_path):
    other = _plan(tmp_path, TINY.replace("limit: 4", "limit: 5"))
    assert reproduce.main(["--plan", str(other), "--synthetic", "--out", str(tiny_study[0])]) == 2


def test_the_estimate_of_what_is_left_scales_the_finished_steps_by_cost():
    steps = [study.Step(f"s{i}", "train", {}, cost) for i, cost in enumerate([1.0, 2.0, 1.0])]
    progress = study.Progress(steps)
    assert progress.left(0) == "estimate after the first step"
    progress.finished(steps[0], 10.0)
    assert progress.left(0) == "about 30 s left"
    assert progress.left(2) == "nothing left"


def test_no_data_without_quick_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reproduce, "DEFAULT_DATA", tmp_path / "data")  # no data/Training there
    assert reproduce.main(["--out", str(tmp_path / "out")]) == 2
    assert "--quick for the synthetic demo" in capsys.readouterr().err


def test_report_only_rebuilds_the_report_from_the_finished_steps(tiny_study, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_study[0], out, ignore=shutil.ignore_patterns("report.*"))
    assert reproduce.main(["--plan", str(_plan(tmp_path)), "--synthetic", "--out", str(out), "--report-only"]) == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert _done(out) == _done(tiny_study[0])  # nothing was run


def test_the_estimate_leaves_out_steps_already_done():
    steps = [study.Step(f"s{i}", "train", {}, 1.0) for i in range(4)]
    progress = study.Progress(steps, done={"s2"})
    progress.finished(steps[0], 10.0)
    assert progress.left(0) == "about 20 s left"


def test_report_only_refuses_a_study_made_with_another_plan_and_keeps_its_report(tiny_study, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_study[0], out)
    before = (out / "report.md").read_text()
    other = _plan(tmp_path, TINY.replace("limit: 4", "limit: 5"))
    assert reproduce.main(["--plan", str(other), "--synthetic", "--out", str(out), "--report-only"]) == 2
    assert "another plan" in capsys.readouterr().err and (out / "report.md").read_text() == before


def test_a_study_refuses_another_external_folder_once_its_external_step_is_done(tmp_path):
    out = tmp_path / "out"

    def opened(external):
        s = study.Study(study.load_plan(_plan(tmp_path), REPO), out, None, external and tmp_path / external, REPO)
        study.open_study(s)
        return s

    opened("ext1")
    opened("ext2")  # the external step never ran: another folder may be given
    s = opened(None)
    step = s.step("binary_external")
    s.folder(step).mkdir(parents=True)
    study.write_json(s.folder(step) / study.DONE, {"step": step.name, "outputs": {
        "external": str((tmp_path / "ext1").resolve())}, "finished_ns": 1})
    opened("ext1")
    opened(None)  # a rerun without --external keeps the finished step
    with pytest.raises(UserError, match="step binary_external was done on the external folder .*ext1"):
        opened("ext2")


def test_a_study_folder_inside_the_data_and_unusable_external_names_are_refused_at_once(tmp_path, capsys):
    data = tmp_path / "data"
    for subset in ("Training", "Testing"):
        for cls in ("glioma_tumor", "no_tumor"):
            (data / subset / cls).mkdir(parents=True)
            (data / subset / cls / "x.png").write_bytes(b"")
    assert reproduce.main(["--plan", str(_plan(tmp_path)), "--data", str(data), "--out", str(data / "study")]) == 2
    assert "inside the data folder" in capsys.readouterr().err and not (data / "study").exists()
    odd = tmp_path / "odd"
    for cls in ("glioma", "healthy_brain"):
        (odd / cls).mkdir(parents=True)
    argv = ["--plan", str(_plan(tmp_path)), "--data", str(data), "--external", str(odd), "--out", str(tmp_path / "s")]
    assert reproduce.main(argv) == 2
    assert "no tumor" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_data_share_too_small_for_a_class_is_a_one_line_error(tmp_path):
    src = tmp_path / "data"
    for cls, n in (("glioma_tumor", 6), ("no_tumor", 1)):
        (src / cls).mkdir(parents=True)
        for k in range(n):
            (src / cls / f"{k}.png").write_bytes(b"")
    with pytest.raises(UserError, match="subset_fraction 0.5 of 7 images cannot keep every class"):
        study.link_subset(src, tmp_path / "share", 0.5, 0)


def test_a_copied_study_folder_keeps_its_finished_steps_whatever_order_the_copy_wrote(tiny_study, tmp_path):
    import os

    out = tmp_path / "copy"
    shutil.copytree(tiny_study[0], out)
    first = sorted(out.glob("*/done.json"))[0]  # the data step, rewritten last by the copy
    later = max(p.stat().st_mtime_ns for p in out.glob("*/done.json")) + 10 ** 9
    os.utime(first, ns=(later, later))
    s = study.Study(study.load_plan(_plan(tmp_path), REPO), out, None, None, REPO)
    assert all(study.newer_inputs(s, step) == [] for step in s.plan.steps)


def test_a_study_begun_before_done_json_kept_its_time_survives_a_copy(tiny_study, tmp_path):
    import json
    import os

    out = tmp_path / "old"
    shutil.copytree(tiny_study[0], out)
    first = sorted(out.glob("*/done.json"))[0]
    record = json.loads(first.read_text())
    del record["finished_ns"]  # written by an older version, which kept the time in the file's mtime only
    first.write_text(json.dumps(record))
    early = min(p.stat().st_mtime_ns for p in out.glob("*/done.json")) - 10 ** 9
    os.utime(first, ns=(early, early))
    s = study.Study(study.load_plan(_plan(tmp_path), REPO), out, None, None, REPO)
    study.open_study(s)  # the new version writes that time in
    later = max(p.stat().st_mtime_ns for p in out.glob("*/done.json")) + 10 ** 9
    os.utime(first, ns=(later, later))  # then a copy rewrites the file's time
    assert all(study.newer_inputs(s, step) == [] for step in s.plan.steps)


def test_an_interrupted_binary_step_continues_with_resume(tmp_path, capsys):
    plan = _plan(tmp_path, TINY.split("steps:")[0] + """steps:
  - {name: data, run: data, report: data}
  - {name: binary_split, run: binary, task: split, gradcam_limit: 0, report: binary}
""")
    out = tmp_path / "out"
    assert reproduce.main(["--plan", str(plan), "--synthetic", "--out", str(out)]) == 0
    step = out / "02-binary_split"
    run = Path(json.loads((step / "done.json").read_text())["outputs"]["run"])
    run = run if run.is_absolute() else out / run
    fold0 = (run / "fold0" / "best.keras").stat().st_mtime_ns
    for gone in (step / "done.json", run / "fold1", run / "binary"):  # as if interrupted in fold 1
        shutil.rmtree(gone) if gone.is_dir() else gone.unlink()
    assert reproduce.main(["--plan", str(plan), "--synthetic", "--out", str(out)]) == 0
    assert "binary_task.py split --resume" in (step / "step.log").read_text()
    assert (run / "fold0" / "best.keras").stat().st_mtime_ns == fold0  # not trained again
    assert (run / "fold1" / "done.json").is_file() and (run / "binary" / "report.md").is_file()


@pytest.mark.parametrize("case", ["a_folder_of_the_users", "a_file"])
def test_an_out_that_is_not_a_study_folder_is_refused_and_left_alone(tmp_path, capsys, case):
    out = tmp_path / "mine"
    if case == "a_file":
        out.write_text("MINE")
    else:
        out.mkdir()
        (out / "report.md").write_text("MINE")
    assert reproduce.main(["--plan", str(_plan(tmp_path)), "--synthetic", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a study folder" in err and err.count("\n") == 1
    assert (out if case == "a_file" else out / "report.md").read_text() == "MINE"
    assert case == "a_file" or [p.name for p in out.iterdir()] == ["report.md"]
