"""Data in one line: kagglehub's download (a local stand-in here: Kaggle is unreachable) and the layouts its
archives unpack to; one-line errors without kagglehub or without a network."""

import sys
import types
from pathlib import Path

import pytest

import reproduce
from brainmri import download
from brainmri.errors import UserError


def _folders(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def _stand_in(monkeypatch, folders: dict[str, Path]) -> list[str]:
    """A fake kagglehub whose dataset_download returns a local folder per handle; returns the handles asked."""
    asked = []

    def dataset_download(handle):
        asked.append(handle)
        return str(folders[handle])

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    return asked


def test_download_finds_training_and_testing_at_the_top_or_one_level_down(tmp_path, monkeypatch):
    top = _folders(tmp_path / "top", "Training/glioma_tumor", "Testing/glioma_tumor")
    nested = _folders(tmp_path / "nested", "Brain-Tumor-MRI/Training/no_tumor", "Brain-Tumor-MRI/Testing/no_tumor")
    for archive, expected in ((top, top), (nested, nested / "Brain-Tumor-MRI")):
        asked = _stand_in(monkeypatch, {download.STUDY_DATASET: archive})
        assert download.download_study() == expected
        assert asked == ["sartajbhuvaji/brain-tumor-classification-mri"]


def test_download_finds_the_yes_no_set_at_the_top_or_one_level_down(tmp_path, monkeypatch):
    top = _folders(tmp_path / "top", "yes", "no", "brain_tumor_dataset/yes", "brain_tumor_dataset/no")
    nested = _folders(tmp_path / "nested", "brain_tumor_dataset/yes", "brain_tumor_dataset/no")
    for archive, expected in ((top, top), (nested, nested / "brain_tumor_dataset")):
        asked = _stand_in(monkeypatch, {download.EXTERNAL_DATASET: archive})
        assert download.download_external() == expected
        assert asked == ["navoneel/brain-mri-images-for-brain-tumor-detection"]


def test_an_archive_without_the_expected_folders_is_a_one_line_error(tmp_path, monkeypatch):
    _stand_in(monkeypatch, {download.STUDY_DATASET: _folders(tmp_path / "odd", "images/a/b")})
    with pytest.raises(UserError, match=r"no Training/ and Testing/ folders in .* \(found: images\)"):
        download.download_study()


def test_without_kagglehub_the_error_says_how_to_install_it_or_download_by_hand(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub -> ImportError
    with pytest.raises(UserError, match=r"pip install 'kagglehub>=0.3'.*by hand") as err:
        download.download_study()
    assert "\n" not in str(err.value)


def test_an_offline_download_is_a_one_line_error_naming_the_dataset(monkeypatch):
    def offline(handle):
        raise ConnectionError("Max retries exceeded with url: /api/v1/datasets\nCaused by NewConnectionError")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=offline))
    with pytest.raises(UserError, match=r"download of navoneel/.* failed \(Max retries exceeded.*\); offline\?") as err:
        download.download_external()
    assert "\n" not in str(err.value)


def test_reproduce_download_uses_both_downloaded_folders(tmp_path, monkeypatch):
    data = _folders(tmp_path / "kaggle", "archive/Training/x", "archive/Testing/x")
    yes_no = _folders(tmp_path / "yesno", "yes", "no")
    _stand_in(monkeypatch, {download.STUDY_DATASET: data, download.EXTERNAL_DATASET: yes_no})
    assert reproduce.resolve_data(reproduce.parse_args(["--download"])) == (data / "archive", yes_no)
    given = tmp_path / "mine"
    assert reproduce.resolve_data(reproduce.parse_args(["--download", "--data", str(given)]))[0] == given.resolve()


def test_python_m_brainmri_download_prints_the_two_folders(tmp_path, monkeypatch, capsys):
    data = _folders(tmp_path / "kaggle", "Training/x", "Testing/x")
    yes_no = _folders(tmp_path / "yesno", "yes", "no")
    _stand_in(monkeypatch, {download.STUDY_DATASET: data, download.EXTERNAL_DATASET: yes_no})
    assert download.main([]) == 0
    out = capsys.readouterr().out
    assert f"study data:    {data}" in out and f"external set:  {yes_no}" in out
