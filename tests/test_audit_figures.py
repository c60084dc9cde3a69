"""The audit's figures are drawn by the real train.py: near-duplicate pairs and label conflicts."""

import shutil

import train


def test_audit_draws_near_duplicate_and_label_conflict_figures(tmp_path, data_copy):
    src = next((data_copy / "Training" / "glioma_tumor").glob("*.png"))
    shutil.copyfile(src, data_copy / "Training" / "no_tumor" / f"conflict_{src.name}")  # one slice, two labels
    out = tmp_path / "out"
    assert train.main(["--audit-only", "--set", f"data_dir={data_copy}", f"output_dir={out}",
                       f"cache_dir={tmp_path / 'cache'}", "image_size=32"]) == 0
    (run,) = (out / "audit").iterdir()
    assert (run / "figures" / "near_duplicate_pairs.png").is_file()
    assert (run / "figures" / "label_conflicts.png").is_file()
