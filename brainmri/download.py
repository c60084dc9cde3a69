"""The study's data in one line: the Kaggle MRI set and the external yes/no set, fetched with kagglehub.

    python -m brainmri.download              # both; prints the two folders to pass as --data and --external
    python -m brainmri.download --study-only

kagglehub keeps its downloads in its own cache (~/.cache/kagglehub); nothing is copied. Without internet,
download the two archives by hand from the Kaggle pages below, unpack them, and pass the folders instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError, cli_entry

STUDY_DATASET = "sartajbhuvaji/brain-tumor-classification-mri"
EXTERNAL_DATASET = "navoneel/brain-mri-images-for-brain-tumor-detection"
KAGGLE_PAGE = "https://www.kaggle.com/datasets/{}"


def fetch(handle: str) -> Path:
    """kagglehub.dataset_download(handle) as a folder, with one-line errors for no kagglehub and no network."""
    try:
        import kagglehub
    except ImportError:
        raise UserError(f"kagglehub is not installed: pip install 'kagglehub>=0.3' (or download "
                        f"{KAGGLE_PAGE.format(handle)} by hand and pass the unpacked folder)") from None
    try:
        folder = Path(kagglehub.dataset_download(handle))
    except Exception as err:  # kagglehub raises network, HTTP and auth errors of several libraries
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"download of {handle} failed ({first}); offline? Download {KAGGLE_PAGE.format(handle)} "
                        "by hand, unpack it and pass the folder") from None
    if not folder.is_dir():
        raise UserError(f"kagglehub returned {folder} for {handle}, which is not a folder")
    return folder


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _listing(folder: Path) -> str:
    names = [p.name for p in _children(folder)]
    return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "") or "nothing"


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    """`folder` itself or its first sub-folder (one level down) that holds every one of `names`."""
    for candidate in [folder, *_children(folder)]:
        have = {p.name.lower() for p in _children(candidate)}
        if all(n in have for n in names):
            return candidate
    return None


def root_with(folder: Path, subfolders: tuple[str, str]) -> Path:
    """The folder holding both `subfolders` (any case) in an unpacked archive: at the top or one level down."""
    found = _find(Path(folder), tuple(name.lower() for name in subfolders))
    if found is None:
        raise UserError(f"no {subfolders[0]}/ and {subfolders[1]}/ folders in {folder} or one level below it "
                        f"(found: {_listing(Path(folder))})")
    return found


def study_root(folder: Path) -> Path:
    """The folder with Training/ and Testing/ in the study's unpacked Kaggle archive."""
    return root_with(folder, ("Training", "Testing"))


def yes_no_root(folder: Path) -> Path:
    """The folder with yes/ and no/ class folders in the unpacked external set."""
    return root_with(folder, ("yes", "no"))


def download_study() -> Path:
    """The study's four-class dataset (3,264 images), as the folder to pass as data_dir."""
    return study_root(fetch(STUDY_DATASET))


def download_external() -> Path:
    """The external tumor yes/no set (253 images), as the folder to pass as the external test set."""
    return yes_no_root(fetch(EXTERNAL_DATASET))


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m brainmri.download", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-only", action="store_true", help="only the study's dataset, not the yes/no set")
    args = p.parse_args(argv)
    print(f"study data:    {download_study()}")
    if not args.study_only:
        print(f"external set:  {download_external()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
