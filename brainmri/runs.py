"""Run folders: creation without overwriting, the resolved config, the environment, seeding, logging."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .config import Config, load_config, save_config
from .errors import UserError

log = logging.getLogger("brainmri")


def new_run_dir(cfg: Config) -> Path:
    """outputs/<experiment>/<time>-<backbone>-<size>[-N]: a fresh folder, never an existing one."""
    return new_folder(Path(cfg.output_dir) / cfg.experiment /
                      f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.backbone}-{cfg.image_size}")


def new_folder(base: Path) -> Path:
    """Create `base`, or base-2, base-3, ... if taken: results never land in an earlier run's folder."""
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder next to {base}")


def open_run_dir(cfg: Config, run_dir: str | Path) -> Path:
    """Use a named run folder (fold jobs, --resume): create it, or check its config matches ours."""
    path = Path(run_dir)
    saved = path / "config.yaml"
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
            return json.loads((folder / "classes.json").read_text()), run
    raise UserError(f"no classes.json beside {model_path} or in its parent folder: cannot name its classes")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def environment() -> dict:
    """Library versions, git commit, command line and devices, for env.json."""
    import cv2
    import keras
    import numpy
    import sklearn

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
