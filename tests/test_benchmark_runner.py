"""benchmarks/run_all.py: one results file per machine, which --only updates instead of replacing."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_all  # noqa: E402


def test_only_some_benchmarks_update_the_results_file_and_keep_the_others(tmp_path, monkeypatch):
    earlier = {"machine": "box", "quick": False, "results": {"2": {"error": "kept from the full run"}}}
    (tmp_path / "box.json").write_text(json.dumps(earlier))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(run_all.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "no GPU here"))
    assert run_all.main(["--only", "1", "--machine", "box", "--out", str(tmp_path)]) == 1
    results = json.loads((tmp_path / "box.json").read_text())["results"]
    assert results == {"1": {"error": "no GPU here"}, "2": {"error": "kept from the full run"}}
    assert "kept from the full run" in (tmp_path / "box.md").read_text()
