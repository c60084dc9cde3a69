"""Run folders: creation without overwriting, the resolved config, the environment, seeding, logging."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy
import sklearn

from .atomic import write_atomic
from .config import Config, load_config, merge, save_config
from .errors import UserError
from .paths import is_within

log = logging.getLogger("brainmri")


def new_run_dir(cfg: Config) -> Path:
    """outputs/<experiment>/<time>-<backbone>-<size>[-N]: a fresh folder, never an existing one."""
    return new_folder(Path(cfg.output_dir) / cfg.experiment /
                      f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.backbone}-{cfg.image_size}")


def new_folder(base: Path) -> Path:
    """Create `base`, or base-2, base-3, ... if taken: results never land in an earlier run's folder."""
    for path in _numbered(base):
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder next to {base}")


def _numbered(base: Path):
    """base, base-2, base-3, ... base-999: the names a new result folder may take."""
    yield base
    for n in range(2, 1000):
        yield base.with_name(f"{base.name}-{n}")


RUN_FILES = {"audit.json", "classes.json", "env.json", "splits.csv", "data_summary.csv", "skipped.csv", "train.log",
             "cv_summary.csv", "cv_summary.json", "cv_summary.md", "figures", "tensorboard", "evaluation", "gradcam",
             "binary", "binary_task.json"}


def write_whole(base: Path, write, replace: bool = False) -> tuple[Path, object]:
    """Run write(folder) on a hidden temporary folder beside `base` and, when it returns, rename that folder
    to the first free name of base, base-2, ... (as new_folder), or to base itself, replacing what is there
    (`replace`: a run's own earlier binary/ report): a reader looking for base* (gradcam --misclassified, a
    study's report) never takes an interrupted writer's half for a result. On an error or Ctrl-C the temporary
    folder is removed. Returns the folder and what write returned."""
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{base.name}.", suffix=".partial", dir=base.parent))  # one per writer
    try:
        result = write(tmp)
        if replace:
            if base.exists():
                shutil.rmtree(base)
            tmp.rename(base)
            return base, result
        for final in _numbered(base):  # a name no folder has (a rename onto a folder is not portable)
            if final.exists():
                continue
            try:
                tmp.rename(final)
                return final, result
            except OSError:  # another writer took that name just now
                if not final.exists():
                    raise
        raise UserError(f"could not find a free name next to {base}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_run_dir(cfg: Config, run_dir: str | Path) -> Path:
    """Use a named run folder (fold jobs, --resume): create it, or check its config matches ours. A folder
    without config.yaml that already holds a file of the name a run writes (RUN_FILES, fold*) is someone
    else's: refused, so that nothing in it is overwritten. Other files may be there (a job scheduler's log)."""
    path = Path(run_dir)
    saved = path / "config.yaml"
    if not cfg.synthetic and is_within(path, cfg.data_dir):
        raise UserError(f"run folder {path} lies inside the data folder ({cfg.data_dir}): runs must not write into "
                        "the data (its figures would be read as images of a class)")
    if path.is_dir() and not saved.is_file():
        ours = sorted(p.name for p in path.iterdir() if p.name in RUN_FILES or p.name.startswith("fold"))
        if ours:
            raise UserError(f"{path} holds {ours[0]} but no config.yaml: it is not a run folder of this project; "
                            "give a new folder, or one without the files a run writes")
    if saved.is_file():
        previous = load_config(saved)
        if previous != cfg:
            diff = [k for k in cfg.to_dict() if cfg.to_dict()[k] != previous.to_dict()[k]]
            raise UserError(f"{path} was made with another config (differs in: {', '.join(diff)}); "
                            "use the same config or a new run folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def classes_of_model(model_path: Path) -> tuple[list[str], Path | None]:
    """The class names of a saved .keras model (classes.json beside it or one folder up) and its run folder."""
    for folder in (model_path.parent, model_path.parent.parent):
        if (folder / "classes.json").is_file():
            run = folder if (folder / "config.yaml").is_file() else None
            return run_classes(folder), run
    raise UserError(f"no classes.json beside {model_path} or in its parent folder: cannot name its classes")


def find_fold_models(run_dir: Path) -> tuple[dict[int, Path], list[str]]:
    """Best models of the finished folds, and a note for each fold folder that is not finished."""
    models, notes = {}, []
    for fold_dir in sorted(run_dir.glob("fold*")):
        if not fold_dir.name[4:].isdigit():
            continue
        k = int(fold_dir.name[4:])
        if (fold_dir / "done.json").is_file() and (fold_dir / "best.keras").is_file():
            models[k] = fold_dir / "best.keras"
        else:
            notes.append(f"fold {k} is unfinished (no done.json or best.keras): left out")
    return models, notes


@dataclass
class Trained:
    """Trained models opened for evaluate.py or gradcam.py: a run folder's fold models, or one .keras file."""

    run: Path | None  # the run folder (its config, splits and data); None for a model taken on its own
    cfg: Config  # the run's config; the defaults for a model outside a run
    classes: list[str]
    models: dict[int, Path]  # fold -> model file
    notes: list[str]  # folds left out, and why
    folder: Path  # where the evaluation/ or gradcam/ folder goes


def open_run_or_model(target: Path, figure_formats=None) -> Trained:
    """A run folder's finished fold models, or a .keras model on its own (evaluate.py); `figure_formats`
    overrides the run's."""
    if target.is_file() and target.suffix == ".keras":
        trained = Trained(None, Config(), classes_of_model(target)[0], {0: target}, [], target.parent)
    else:
        if not (target / "config.yaml").is_file():
            raise UserError(f"{target} is neither a run folder (no config.yaml) nor a .keras model")
        models, notes = find_fold_models(target)
        if not models:
            raise UserError(f"{target} has no finished fold (fold*/done.json): train first, or wait for a fold")
        trained = Trained(target, load_config(target / "config.yaml"), run_classes(target), models, notes, target)
    return _with_formats(trained, figure_formats)


def open_fold_model(target: Path, fold: int, figure_formats=None) -> Trained:
    """One model (gradcam.py): fold `fold` of a run folder, or a .keras file (with its run's config when it
    lies in a run folder); `figure_formats` overrides the run's."""
    if target.suffix == ".keras":
        if not target.is_file():
            raise UserError(f"model file not found: {target}")
        classes, run = classes_of_model(target)
        cfg = load_config(run / "config.yaml") if run else Config()
        trained = Trained(run, cfg, classes, {fold: target}, [], run or target.parent)
    else:
        model_path = target / f"fold{fold}" / "best.keras"
        if not (target / "config.yaml").is_file() or not model_path.is_file():
            raise UserError(f"{target} is not a run folder with a trained fold {fold} ({model_path} missing)")
        trained = Trained(target, load_config(target / "config.yaml"), run_classes(target), {fold: model_path}, [],
                          target)
    return _with_formats(trained, figure_formats)


def run_classes(folder: Path) -> list[str]:
    """The class names a run's models tell apart (the classes.json of `folder`), or a one-line error naming
    the file."""
    path = folder / "classes.json"
    try:
        classes = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({type(err).__name__}): the run folder is incomplete") from None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{path} must hold a list of class names")
    return classes


def add_figure_formats_option(parser) -> None:
    """--figure-formats: the override of the run's figure_formats (evaluate.py, gradcam.py)."""
    parser.add_argument("--figure-formats", nargs="+", metavar="FMT",
                        help="png, pdf and/or svg (default: the run's figure_formats)")


def _with_formats(trained: Trained, figure_formats) -> Trained:
    if figure_formats:
        trained.cfg = merge(trained.cfg, {"figure_formats": list(figure_formats)}, "--figure-formats")
    return trained


def environment() -> dict:
    """Library versions, git commit, command line and devices, for env.json."""
    import keras

    from . import backend

    env = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "python": platform.python_version(),
           "platform": platform.platform(), "host": platform.node(), "keras": keras.__version__,
           **backend.versions(), "numpy": numpy.__version__, "opencv": cv2.__version__,
           "scikit_learn": sklearn.__version__, "cpu_count": os.cpu_count(), "gpus": backend.gpu_names()}
    try:
        here = Path(__file__).resolve().parent
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                           timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def setup_logging(run_dir: Path | None = None) -> None:
    handlers = [logging.StreamHandler(sys.stdout)]
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing chatter, not our news
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)


def start_run(cfg: Config, run_dir: str | Path | None = None) -> Path:
    """The one setup call: run folder, config.yaml, env.json, log file, seeds."""
    import keras

    path = open_run_dir(cfg, run_dir) if run_dir else new_run_dir(cfg)
    if not (path / "config.yaml").is_file():
        save_config(cfg, path / "config.yaml")
    write_atomic(path / "env.json", json.dumps(environment(), indent=2))
    setup_logging(path)
    keras.utils.set_random_seed(cfg.seed)
    log.info("run folder: %s", path)
    return path
