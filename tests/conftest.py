"""Shared fixtures: a tiny synthetic dataset in both folder layouts, written once per session."""

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402

from brainmri.synthetic import write_synthetic  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "brain-tumor-classification-mri"


@pytest.fixture(scope="session")
def kaggle_dir(tmp_path_factory) -> Path:
    """Training/ and Testing/ class folders, 16 synthetic images per class, 64 px."""
    return write_synthetic(tmp_path_factory.mktemp("kaggle"), per_class=16, size=64, seed=1)


@pytest.fixture()
def flat_dir(kaggle_dir, tmp_path) -> Path:
    """Class folders only (the flat layout), copied from the Training folder."""
    shutil.copytree(kaggle_dir / "Training", tmp_path / "flat")
    return tmp_path / "flat"


@pytest.fixture()
def data_copy(kaggle_dir, tmp_path) -> Path:
    """A private copy of the Kaggle-layout set that a test may break."""
    shutil.copytree(kaggle_dir, tmp_path / "data", ignore=shutil.ignore_patterns("masks", "planes.csv"))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny run of the real train.py on the synthetic set (with masks): 2 folds, 1 epoch, 32 px."""
    import train

    out = tmp_path_factory.mktemp("trained")
    run = out / "run"
    assert train.main(["--run-dir", str(run), "--set", "synthetic=true", "synthetic_per_class=16",
                       f"cache_dir={out / 'cache'}", "image_size=32", "backbone=small_cnn", "weights=none",
                       "epochs=1", "folds=2", "batch_size=16"]) == 0
    return run


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the trained run (its data stays in the shared cache)."""
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"
