"""The study plan (configs/study.yaml): its steps run in order through the project's own scripts, each in its
own folder under one study folder, resumable, with one progress line per step and an estimate of what is left.

Every step calls a script (train.py, evaluate.py, gradcam.py, compare_backbones.py, augment.py,
binary_task.py) as a subprocess with its command-line flags, so the study runs exactly what a student would
type, and the scripts' internals can change freely. A step is finished when its folder holds done.json
(written atomically, last); a rerun keeps finished steps, continues an interrupted training run with
train.py --resume (binary_task.py --resume), and reruns any other interrupted step in a fresh folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import load_config, read_yaml
from .errors import UserError
from .paths import is_within, same_folder

PLAN_KEYS = {"data", "config", "binary_config", "set", "steps"}
COMMON_KEYS = {"name", "run", "report", "cost"}
KIND_KEYS = {  # each kind's own keys; the step's references to earlier steps are checked
    "data": set(),
    "train": {"set", "data_from", "planes_from"},
    "evaluate": {"of"},
    "gradcam": {"of", "images", "limit"},
    "compare": {"runs"},
    "augment": {"class", "target"},
    "planes": set(),
    "binary": {"task", "set", "planes_from", "gradcam_limit"},
}
DEFAULT_COST = {"data": 0.02, "train": 1.0, "evaluate": 0.05, "gradcam": 0.03, "compare": 0.05, "augment": 0.02,
                "planes": 0.02, "binary": 1.0}
BINARY_TASKS = ("split", "external", "planes")
DONE = "done.json"


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    options: dict
    cost: float

    def refs(self) -> list[str]:
        """The earlier steps this one reads from (the data step too, where it reads the study's images)."""
        o = self.options
        found = [o[k] for k in ("of", "data_from", "planes_from") if k in o]
        if self.kind in ("train", "binary", "augment", "planes") and "data_from" not in o:
            found.append("data")
        return found + list((o.get("runs") or {}).values())


@dataclass(frozen=True)
class Plan:
    path: Path
    raw: dict  # the file as read: a study folder remembers it, and refuses another plan
    config: str
    binary_config: str
    settings: dict
    data: dict
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class Study:
    plan: Plan
    out: Path  # the study folder
    data: Path | None  # the student's data folder; None: the synthetic demo set
    external: Path | None  # the external yes/no folder; None: that task is skipped
    repo: Path  # the scripts' folder; they run there, so the plan's configs/ paths hold

    def folder(self, step: Step) -> Path:
        return self.out / f"{self.plan.steps.index(step) + 1:02d}-{step.name}"

    def step(self, name: str) -> Step:
        return next(s for s in self.plan.steps if s.name == name)


class StepFailed(UserError):
    """A step's script exited with an error: named in one line, with its log."""


# ---- the plan file -------------------------------------------------------------------------------------------

def load_plan(path: str | Path, repo: Path) -> Plan:
    """Read and check a plan: known keys, unique names, references to earlier steps, valid config keys."""
    raw = read_yaml(path)
    unknown = sorted(set(raw) - PLAN_KEYS)
    if unknown:
        raise UserError(f"unknown key(s) {unknown} in {path} (known: {', '.join(sorted(PLAN_KEYS))})")
    if not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise UserError(f"{path}: 'steps' must be a list of steps")
    steps: list[Step] = []
    for entry in raw["steps"]:
        steps.append(_step(entry, steps, path))
    if (steps[0].name, steps[0].kind) != ("data", "data"):
        raise UserError(f"{path}: the first step must be {{name: data, run: data}} (the study's images)")
    plan = Plan(Path(path), raw, raw.get("config", "configs/default.yaml"), raw.get("binary_config",
                "configs/binary.yaml"), dict(raw.get("set") or {}), dict(raw.get("data") or {}), steps)
    for step in steps:
        if step.kind in ("train", "binary"):
            _check_settings(plan, step, repo)
    return plan


def _step(entry, earlier: list[Step], path) -> Step:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("run") not in KIND_KEYS:
        raise UserError(f"{path}: every step needs a name and run: one of {', '.join(KIND_KEYS)}; got {entry!r}")
    name, kind = entry["name"], entry["run"]
    where = f"{path}: step '{name}'"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in [s.name for s in earlier]:
        raise UserError(f"{where}: names must be unique and use letters, digits, _ and - only")
    unknown = sorted(set(entry) - COMMON_KEYS - KIND_KEYS[kind])
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown} for run: {kind} "
                        f"(known: {', '.join(sorted(COMMON_KEYS | KIND_KEYS[kind]))})")
    options = {k: v for k, v in entry.items() if k not in ("name", "run", "cost")}
    step = Step(name, kind, options, float(entry.get("cost", DEFAULT_COST[kind])))
    _check_refs(step, earlier, where)
    if kind == "binary" and options.get("task") not in BINARY_TASKS:
        raise UserError(f"{where}: task must be one of {', '.join(BINARY_TASKS)}")
    if kind == "gradcam" and options.get("images") not in ("correct", "misclassified"):
        raise UserError(f"{where}: images must be correct or misclassified")
    if kind == "augment":
        parse_target(options.get("target"), where)
        if not isinstance(options.get("class"), str):
            raise UserError(f"{where}: needs class: the class to bring up, e.g. no_tumor")
    return step


def _check_refs(step: Step, earlier: list[Step], where: str) -> None:
    wanted = {"of": ("evaluate",) if step.kind == "gradcam" else ("train",), "data_from": ("augment", "data"),
              "planes_from": ("planes",)}
    kinds = {s.name: s.kind for s in earlier}
    needs = [(k, step.options[k], wanted[k]) for k in wanted if k in step.options]
    if step.kind == "compare":
        runs = step.options.get("runs")
        if not isinstance(runs, dict) or len(runs) < 2:
            raise UserError(f"{where}: runs must map two or more names to train steps")
        needs += [("runs", v, ("train",)) for v in runs.values()]
    if step.kind in ("evaluate", "gradcam") and "of" not in step.options:
        raise UserError(f"{where}: needs of: the step it works on")
    for key, ref, allowed in needs:
        if kinds.get(ref) not in allowed:
            raise UserError(f"{where}: {key}: {ref!r} is not an earlier step of kind {' or '.join(allowed)}")


def step_config(plan: Plan, step: Step, repo: Path):
    """The config a training step's script will resolve, less the study's folders."""
    base = plan.binary_config if step.kind == "binary" else plan.config
    settings = {**plan.settings, **(step.options.get("set") or {})}
    return load_config(repo / base, [f"{k}={as_override(v)}" for k, v in settings.items()])  # paths: from repo


def _check_settings(plan: Plan, step: Step, repo: Path) -> None:
    """Unknown config keys and wrong types fail now, not after hours of earlier steps."""
    try:
        step_config(plan, step, repo)
    except UserError as err:
        raise UserError(f"{plan.path}: step '{step.name}': {err}") from None


def parse_target(target, where: str = "") -> tuple[int | None, float | None]:
    """augment's target: a count (890) or a factor of the class's own count ('1.78x')."""
    if isinstance(target, int) and not isinstance(target, bool) and target > 0:
        return target, None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)x", str(target))
    if not m or float(m.group(1)) <= 1:
        raise UserError(f"{where}: target must be a count (890) or a factor above 1 ('1.78x'), got {target!r}")
    return None, float(m.group(1))


def as_override(value) -> str:
    """A value as train.py's --set reads it back (YAML): plain where that is unambiguous, JSON otherwise."""
    value = str(value) if isinstance(value, Path) else value
    words = ("true", "false", "null", "none", "yes", "no", "on", "off")
    if isinstance(value, str) and re.fullmatch(r"[\w./-]+", value) and value.lower() not in words:
        return value
    return json.dumps(value)


# ---- the study folder ----------------------------------------------------------------------------------------

def open_study(study: Study) -> None:
    """Create the study folder, or check that an existing one was made by the same plan on the same data, and
    that a finished external step was done on the external folder given (check_study). A done.json of an older
    version gets its finishing time written in (finished_ns, from the file's time, while that still holds)."""
    record = study.out / "study.json"
    if record.is_file():
        check_study(study)
        for step in study.plan.steps:
            marker = study.folder(step) / DONE
            if marker.is_file() and "finished_ns" not in (done := json.loads(marker.read_text())):
                write_json(marker, {**done, "finished_ns": marker.stat().st_mtime_ns})
        return
    if study.out.exists() and (not study.out.is_dir() or any(study.out.iterdir())):
        raise UserError(f"--out {study.out} is not a study folder (no study.json) and is not empty: give a new or "
                        "empty folder, or the folder of this study")
    study.out.mkdir(parents=True, exist_ok=True)
    write_json(record, {**_identity(study), "plan_file": str(study.plan.path),
                        "created": time.strftime("%Y-%m-%d %H:%M:%S")})


def check_outside(out: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse a study folder that is, or lies inside, one of its input folders (by name: what it is)."""
    for what, folder in inputs.items():
        if folder is not None and is_within(out, folder):
            raise UserError(f"--out {out} lies inside the {what} {folder}: a study never writes into its inputs")


def _identity(study: Study) -> dict:
    return {"plan": study.plan.raw, "data": str(study.data) if study.data else "synthetic"}


def check_study(study: Study) -> None:
    """Refuse a study folder made by another plan or on other data (study.json), or whose finished external
    step was done on another external folder than the one given (it would be kept, and reported as if done
    on this one). Without --external, a finished external step is kept as it is."""
    saved = json.loads((study.out / "study.json").read_text())
    mine = _identity(study)
    for what in ("data", "plan"):
        if saved.get(what) != mine[what]:
            raise UserError(f"{study.out} holds a study made with another {what} ({saved.get('plan_file')} on "
                            f"{saved.get('data')}): use the same flags, or another --out")
    if study.external is None:
        return
    for step in study.plan.steps:  # the external step's done.json records its folder (run_binary)
        used = ((done_record(study, step) or {}).get("outputs") or {}).get("external")
        if used is not None and not same_folder(used, study.external):
            raise UserError(f"{study.out}: step {step.name} was done on the external folder {used}, not "
                            f"{study.external}: use the same --external, or another --out")


def write_json(path: Path, data: dict) -> None:
    """Write via a temporary file and rename: a reader never sees half a file, a crash never leaves one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def saved_data(out: Path) -> Path | None:
    """The data folder a study folder was made with (None: the synthetic set)."""
    data = json.loads((out / "study.json").read_text())["data"]
    return None if data == "synthetic" else Path(data)


def done_record(study: Study, step: Step) -> dict | None:
    marker = study.folder(step) / DONE
    return json.loads(marker.read_text()) if marker.is_file() else None


def stored(study: Study, path: Path) -> str:
    """A path as done.json keeps it: relative inside the study folder (which may move), absolute outside."""
    path = Path(path).resolve()
    return path.relative_to(study.out).as_posix() if study.out in path.parents or path == study.out else str(path)


def restored(study: Study, value: str) -> Path:
    return study.out / value if not Path(value).is_absolute() else Path(value)


def output(study: Study, name: str, key: str) -> Path:
    """An earlier step's output (`run`, `data`, `planes`, ...), from its done.json."""
    record = done_record(study, study.step(name)) or {}
    value = (record.get("outputs") or {}).get(key)
    if value is None:
        raise UserError(f"step '{name}' has no output '{key}': delete {study.folder(study.step(name))} and rerun")
    return restored(study, value)


def fresh_folder(study: Study, folder: Path) -> Path:
    """An empty step folder; a partial one of an interrupted step is replaced (only ever inside the study)."""
    if folder.exists():
        if study.out.resolve() not in folder.resolve().parents:
            raise UserError(f"refusing to delete {folder}: not inside the study folder {study.out}")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# ---- running scripts -----------------------------------------------------------------------------------------

def call(study: Study, step: Step, script: str, args: list) -> None:
    """Run one of the project's scripts for `step`, its output appended to the step's step.log."""
    cmd = [sys.executable, str(study.repo / script), *map(str, args)]
    log = study.folder(step) / "step.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, cwd=study.repo, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise StepFailed(f"step '{step.name}' failed ({script} exited with {rc}): {last_message(log)} (log: {log})")


NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages|To enable the following|\s*$)")


def last_message(log: Path) -> str:
    """The script's own last word: its 'error:' line, else the last line that is not TensorFlow start-up chatter."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if not NOISE.match(ln)]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["no output"])[-1]


def training_args(study: Study, step: Step, base: str) -> list[str]:
    """--config and --set of a training step: the plan's settings, the step's, and the study's folders."""
    values = {**study.plan.settings, **(step.options.get("set") or {})}
    values["data_dir"] = output(study, step.options.get("data_from", "data"), "data")
    values["cache_dir"] = study.out / "cache"
    if "planes_from" in step.options:
        values["planes_file"] = output(study, step.options["planes_from"], "planes")
    return ["--config", base, "--set", *(f"{k}={as_override(v)}" for k, v in values.items())]


def new_folders(parent: Path, pattern: str, before: set[Path]) -> Path | None:
    """The newest folder matching `pattern` that was not there before a script ran."""
    made = [p for p in parent.glob(pattern) if p.is_dir() and p not in before]
    return max(made, key=lambda p: p.stat().st_mtime) if made else None


# ---- the kinds of step ---------------------------------------------------------------------------------------

def run_data(study: Study, step: Step, folder: Path) -> dict:
    """The study's images: the synthetic demo set, the student's folder, or a stratified share of it (linked)."""
    from .synthetic import write_synthetic

    fraction = float(study.plan.data.get("subset_fraction", 1.0))
    if study.data is None:
        per_class = int(study.plan.data.get("synthetic_per_class", 150))
        size = int(study.plan.data.get("synthetic_size", 128))
        root = write_synthetic(folder / "data", per_class, size=size, seed=int(study.plan.settings.get("seed", 42)))
        return {"data": stored(study, root), "source": "synthetic", "per_class": per_class}
    if fraction >= 1:
        return {"data": str(study.data), "source": str(study.data)}
    kept = link_subset(study.data, folder / "data", fraction, int(study.plan.settings.get("seed", 42)))
    return {"data": stored(study, folder / "data"), "source": str(study.data), "subset_fraction": fraction,
            "images": kept}


def link_subset(src: Path, dst: Path, fraction: float, seed: int) -> int:
    """Hard-link (or copy) a class- and subset-stratified share of `src`'s images into `dst`, same layout."""
    from .data import find_images
    from .pipeline import stratified_share

    items, _ = find_images(src)
    keys = [f"{subset}/{label}" for _, label, subset in items]
    keep = [items[i] for i in stratified_share(keys, fraction, seed)]  # a share too small: a one-line error
    for rel, _, _ in keep:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:  # another file system
            shutil.copyfile(src / rel, target)
    planes = src / "planes.csv"
    if planes.is_file():  # keep the known planes of the images kept
        wanted = {rel for rel, _, _ in keep}
        with open(planes, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["path"] in wanted]
        with open(dst / "planes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["path", "plane"], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return len(keep)


def run_train(study: Study, step: Step, folder: Path) -> dict:
    """train.py into <step>/run; an interrupted run continues with train.py --resume."""
    run = folder / "run"
    call(study, step, "train.py", start_or_resume(study, step, study.plan.config, run))
    return {"run": stored(study, run)}


def start_or_resume(study: Study, step: Step, base: str, run: Path) -> list:
    """A training script's flags for `run`: --resume where an interrupted attempt left its config.yaml, else
    the step's --config and --set (training_args) and --run-dir."""
    if (run / "config.yaml").is_file():
        return ["--resume", run]
    return [*training_args(study, step, base), "--run-dir", run]


def run_evaluate(study: Study, step: Step, folder: Path) -> dict:
    """evaluate.py on a training step's run; its report lands in that run folder (evaluation*/)."""
    run = output(study, step.options["of"], "run")
    before = set(run.glob("evaluation*"))
    call(study, step, "evaluate.py", [run])
    made = new_folders(run, "evaluation*", before)
    return {"run": stored(study, run), "evaluation": stored(study, made)}


def run_gradcam(study: Study, step: Step, folder: Path) -> dict:
    """gradcam.py on correctly classified test images (chosen from the evaluation) or on evaluate.py's
    misclassified list."""
    run = output(study, step.options["of"], "run")
    evaluation = output(study, step.options["of"], "evaluation")
    limit = int(step.options.get("limit", 16))
    if step.options["images"] == "correct":
        picked = correct_images(evaluation, run, limit)
        args = [run, *picked, "--limit", limit]
    else:
        picked = read_rows(evaluation / "test" / "misclassified.csv")
        args = [run, "--misclassified", "--limit", limit]
    if not picked:
        return {"run": stored(study, run), "gradcam": None, "note": f"no {step.options['images']} test image"}
    before = set(run.glob("gradcam*"))
    call(study, step, "gradcam.py", args)
    return {"run": stored(study, run), "gradcam": stored(study, new_folders(run, "gradcam*", before)),
            "images": min(limit, len(picked))}


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def correct_images(evaluation: Path, run: Path, limit: int) -> list[str]:
    """Up to `limit` test images the fold ensemble got right, taken class by class in turn."""
    import yaml

    rows = [r for r in read_rows(evaluation / "test" / "predictions.csv")
            if r["model"] == "ensemble" and r["true"] == r["pred"]]
    root = Path(yaml.safe_load((run / "config.yaml").read_text())["data_dir"])
    by_class: dict[str, list[str]] = {}
    for r in rows:
        by_class.setdefault(r["true"], []).append(str(root / r["path"]))
    queues = list(by_class.values())
    turns = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return turns[:limit]


def run_compare(study: Study, step: Step, folder: Path) -> dict:
    """compare_backbones.py --runs: the table of finished training steps, same folds checked."""
    pairs = [f"{name}={output(study, ref, 'run')}" for name, ref in step.options["runs"].items()]
    call(study, step, "compare_backbones.py", ["--runs", *pairs, "--reference", next(iter(step.options["runs"])),
                                               "--output-dir", folder])
    return {"comparison": stored(study, new_folders(folder / "compare", "*", set()))}


def run_augment(study: Study, step: Step, folder: Path) -> dict:
    """augment.py: the class brought up to its target in a new folder inside the study (the input is only read)."""
    from .balance import usable_images

    data = output(study, "data", "data")
    cls = step.options["class"]
    count, factor = parse_target(step.options["target"], step.name)
    have = usable_images(data, cls)  # as augment.py counts: images training can use
    target = count if count is not None else round(have * factor)
    call(study, step, "augment.py", [data, "--out", folder / "data", "--class", cls, "--target", target, "--link"])
    return {"data": stored(study, folder / "data"), "class": cls, "before": have, "target": target}


def run_planes(study: Study, step: Step, folder: Path) -> dict:
    """Every image's slice plane: the data folder's own planes.csv, else estimated (augment.py --estimate-planes)."""
    data = output(study, "data", "data")
    planes = folder / "planes.csv"
    if (data / "planes.csv").is_file():
        shutil.copyfile(data / "planes.csv", planes)
        return {"planes": stored(study, planes), "source": "the data folder's planes.csv"}
    call(study, step, "augment.py", [data, "--estimate-planes", planes])
    return {"planes": stored(study, planes), "source": "estimated (augment.py --estimate-planes)"}


def run_binary(study: Study, step: Step, folder: Path) -> dict:
    """binary_task.py TASK into <step>/run: a training run plus binary/ (report, threshold, Grad-CAM of its
    misclassified); an interrupted run continues with binary_task.py --resume."""
    task, run = step.options["task"], folder / "run"
    args = [task, *start_or_resume(study, step, study.plan.binary_config, run)]
    if task == "external":
        args += ["--external-test", study.external]
    if "gradcam_limit" in step.options:
        args += ["--gradcam-limit", step.options["gradcam_limit"]]
    call(study, step, "binary_task.py", args)
    on = {"external": str(Path(study.external).resolve())} if task == "external" else {}  # check_study reads it
    return {"run": stored(study, run), "task": task, **on}


RUNNERS = {"data": run_data, "train": run_train, "evaluate": run_evaluate, "gradcam": run_gradcam,
           "compare": run_compare, "augment": run_augment, "planes": run_planes, "binary": run_binary}
RESUMABLE = {"train", "binary"}  # the others rerun from scratch in a fresh folder


# ---- the plan, step by step ----------------------------------------------------------------------------------

def skip_reason(study: Study, step: Step, skipped: set[str]) -> str | None:
    if step.kind == "binary" and step.options["task"] == "external" and study.external is None:
        return "no external folder: pass --external DIR (a yes/ and no/ folder; --download fetches the study's)"
    missing = [r for r in step.refs() if r in skipped]
    return f"it needs {', '.join(missing)}, which was skipped" if missing else None


class Progress:
    """One line per step, and what is left: the seconds per unit of cost of the finished steps, times the
    cost of the steps still to run."""

    def __init__(self, steps: list[Step], done: set[str] = frozenset()):
        self.steps, self.seconds, self.cost = steps, 0.0, 0.0
        self.done = set(done)  # kept from an earlier run: nothing left to do for them

    def finished(self, step: Step, seconds: float) -> None:
        self.seconds += seconds
        self.cost += step.cost

    def left(self, index: int) -> str:
        rest = sum(s.cost for s in self.steps[index + 1:] if s.name not in self.done)
        if not rest:
            return "nothing left"
        if not self.cost or not self.seconds:
            return "estimate after the first step"
        return f"about {duration(self.seconds / self.cost * rest)} left"

    def head(self, index: int, step: Step) -> str:
        n = len(self.steps)
        return f"[{index + 1:{len(str(n))}d}/{n}] {step.name:<24} "

    def tail(self, index: int, what: str) -> str:
        return f"{what}; {self.left(index)}"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_plan(study: Study, say=print) -> list[str]:
    """Every step in order (finished ones kept, skippable ones skipped); returns the names of skipped steps.
    One line per step: its name when it starts, how it ended and what is left when it ends."""
    open_study(study)
    kept = {s.name for s in study.plan.steps if done_record(study, s) and not newer_inputs(study, s)}
    progress, skipped = Progress(study.plan.steps, kept), set()
    for i, step in enumerate(study.plan.steps):
        head = progress.head(i, step)
        record, changed = done_record(study, step), newer_inputs(study, step)
        if record is not None and not changed:
            progress.finished(step, record.get("seconds", 0.0))
            say(head + progress.tail(i, "already done, kept"))
            continue
        reason = skip_reason(study, step, skipped)
        if reason:
            skipped.add(step.name)
            say(head + progress.tail(i, f"skipped: {reason}"))
            continue
        say(head, end="", flush=True)
        try:
            seconds = run_step(study, step, fresh=bool(changed))
        except BaseException as err:
            say("interrupted" if isinstance(err, KeyboardInterrupt) else "failed")
            raise
        progress.finished(step, seconds)
        redone = f" (redone: {', '.join(changed)} changed since)" if changed and record else ""
        say(progress.tail(i, f"done in {duration(seconds)}{redone}"))
    return sorted(skipped)


def newer_inputs(study: Study, step: Step) -> list[str]:
    """The earlier steps this one read from that finished after it did: it must be redone. When a step
    finished is what its done.json records (finished_ns), not the file's time, which copying a study folder
    rewrites in any order; a done.json of an older version has only the file's time."""
    mine = finished_ns(study.folder(step) / DONE)
    if mine is None:
        return []
    return [r for r in dict.fromkeys(step.refs())
            if (theirs := finished_ns(study.folder(study.step(r)) / DONE)) is not None and theirs > mine]


def finished_ns(marker: Path) -> int | None:
    """When the step whose done.json is `marker` finished (None: not done): as recorded in it, else (an older
    version's file) the file's time."""
    if not marker.is_file():
        return None
    recorded = json.loads(marker.read_text()).get("finished_ns")
    return int(recorded) if recorded is not None else marker.stat().st_mtime_ns


def run_step(study: Study, step: Step, fresh: bool = False) -> float:
    """Run one step into its folder and mark it done; returns its seconds. An interrupted training step
    (train, binary) continues in its folder; any other step (or one whose inputs changed: `fresh`) starts in an empty one."""
    folder = study.folder(step)
    if fresh or step.kind not in RESUMABLE or not folder.exists():
        fresh_folder(study, folder)
    start = time.perf_counter()
    outputs = RUNNERS[step.kind](study, step, folder)
    seconds = time.perf_counter() - start
    write_json(folder / DONE, {"step": step.name, "run": step.kind, "seconds": round(seconds, 1),
                               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "finished_ns": time.time_ns(),
                               "outputs": outputs})
    return seconds
