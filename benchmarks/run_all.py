"""Every benchmark, one after the other, each in its own process; one results file and one Markdown table.

    python benchmarks/run_all.py                 # on ../shared/datasets when present, else synthetic data
    python benchmarks/run_all.py --quick         # small settings: checks the scripts run (figures not meaningful)
    python benchmarks/run_all.py --only 1 5      # some of them
    KERAS_BACKEND=jax python benchmarks/run_all.py --only 1 6   # on another backend (results file <machine>-jax)

Writes benchmarks/results/<machine>.json and <machine>.md (README "Performance" shows the table); --only
updates those benchmarks' results in them and keeps the others'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# number -> (script, full arguments, quick arguments)
BENCHMARKS = {
    1: ("train_throughput.py", ["--steps", "10"], ["--backbone", "small_cnn", "--size", "64", "--steps", "4", "--reps", "1"]),
    2: ("study_way.py", [], ["--size", "48"]),
    3: ("data_prep.py", [], ["--size", "48"]),
    4: ("cv_overhead.py", [], ["--set", "epochs=1", "folds=2", "synthetic_per_class=16", "image_size=32"]),
    5: ("gradcam_speed.py", ["--reps", "3"], ["--models", "small_cnn:64", "--reps", "1"]),
    6: ("inference.py", [], ["--backbone", "small_cnn", "--size", "64", "--images", "64", "--reps", "1"]),
    7: ("scaling.py", [], ["--size", "48"]),
}


def headline(n: int, r: dict) -> tuple[str, str]:
    """(setting, measured) for the table."""
    if n == 1:
        ips = r["images_per_second"]
        return (f"{r['backbone']} {r['image_size']} px, batch {r['batch']}, {r['steps']} steps",
                f"pipeline+fit {ips['pipeline_fit']:.1f} img/s vs ceiling {ips['ceiling_one_batch']:.1f}: "
                f"**{r['ratio']:.2f}**")
    if n == 2:
        s, o = r["ways"]["study"], r["ways"]["ours"]
        return (f"{r['backbone']} {r['image_size']} px, {r['epochs']} epoch(s)",
                f"time {o['seconds']:.0f} s vs {s['seconds']:.0f} s (**{r['time_ratio_ours_vs_study']:.2f}x**); "
                f"dataset {o['dataset_mb']:.0f} MB vs {s['dataset_mb']:.0f} MB (**{r['dataset_memory_ratio']:.2f}**); "
                f"peak RSS {o['peak_rss_mb']:.0f} vs {s['peak_rss_mb']:.0f} MB")
    if n == 3:
        t = r["seconds"]
        return (f"{r['images']} images, {r['size']} px",
                f"decode+resize+hash+group {t['ours_total']:.2f} s vs plain loop {t['plain_loop']:.2f} s "
                f"(**{r['ours_vs_plain']:.2f}x**); cached reload **{t['cached_reload']:.2f} s**")
    if n == 4:
        t = r["seconds"]
        return (f"{r['config']} ({r['backbone']}, {r['image_size']} px, {r['folds']} folds x {r['epochs']} epochs)",
                f"wall {t['wall']:.0f} s, fit {t['fit_sum']:.0f} s: overhead **{r['overhead']:.1%}**")
    if n == 5:
        parts = []
        for m in r["results"]:
            eager = f"**{m['batched_vs_eager']:.0f}x** eager Keras-example loop, " if "batched_vs_eager" in m else ""
            parts.append(f"{m['model']} {m['image_size']} px: {eager}**{m['batched_vs_per_image']:.1f}x** per-image "
                         f"compiled loop, **{m['batched_vs_forward']:.2f}** of forward")
        return ("batch 32", "; ".join(parts))
    if n == 6:
        ips = r["images_per_second"]
        return (f"{r['backbone']} {r['image_size']} px, {r['images']} images, batch {r['batch']}",
                f"evaluate {ips['evaluate_predict']:.1f} img/s vs forward {ips['compiled_forward']:.1f}: **{r['ratio']:.2f}**")
    rows = r["rows"]
    return (f"{r['backbone']} {r['image_size']} px; " + "/".join(f"{x['images']}" for x in rows) + " images",
            "prep " + " / ".join(f"{x['prep_seconds']:.1f}" for x in rows) + " s, epoch "
            + " / ".join(f"{x['epoch_seconds']:.1f}" for x in rows) + f" s: worst **{r['worst_vs_linear']:.2f}** of linear")


NAMES = {1: "training throughput vs ceiling", 2: "vs the study's way", 3: "data preparation",
         4: "whole CV run overhead", 5: "Grad-CAM", 6: "inference", 7: "scaling with data size"}


def _backend(meta: dict) -> str:
    """'jax 0.10.2 (jaxlib 0.10.2)', 'tensorflow 2.21.0', 'torch 2.13.0+cpu'."""
    name = meta.get("backend", "?")
    extra = f" (jaxlib {meta['jaxlib']})" if name == "jax" and "jaxlib" in meta else ""
    return f"{name} {meta.get(name, '')}{extra}"


def table(results: dict[int, dict], machine: str, meta: dict) -> str:
    lines = [f"Machine **{machine}**: {meta.get('device', '?')}, {meta.get('cpu_count')} cores ({meta.get('cpu')}); "
             f"Python {meta.get('python')}, Keras {meta.get('keras')} on {_backend(meta)}; {meta.get('date')}. Medians after a warm-up; weights none (speed does not "
             "depend on them).", "", "| # | benchmark | setting | measured | goal | met |", "|---|---|---|---|---|---|"]
    for n, r in sorted(results.items()):
        if "error" in r:
            lines.append(f"| {n} | {NAMES[n]} | | failed: {r['error']} | | |")
            continue
        setting, measured = headline(n, r)
        lines.append(f"| {n} | {NAMES[n]} | {setting} | {measured} | {r['goal']} | {'yes' if r['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", type=int, choices=sorted(BENCHMARKS))
    p.add_argument("--machine", default=os.environ.get("BENCH_MACHINE") or platform.node() or "machine",
                   help="results file name (the backend, KERAS_BACKEND, is appended unless it is tensorflow)")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.only or sorted(BENCHMARKS):
            script, full, quick = BENCHMARKS[n]
            path = Path(tmp) / f"{n}.json"
            start = time.perf_counter()
            print(f"[{n}] {NAMES[n]}: {script} ...", flush=True)
            proc = subprocess.run([sys.executable, str(HERE / script), *(quick if a.quick else full), "--json",
                                   str(path)], capture_output=True, text=True, cwd=HERE.parent)
            if proc.returncode or not path.is_file():
                results[n] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
            else:
                results[n] = json.loads(path.read_text())
            print(f"[{n}] done in {time.perf_counter() - start:.0f} s", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    name = a.machine + ("" if backend == "tensorflow" else f"-{backend}") + ("-quick" if a.quick else "")
    failed = any("error" in r for r in results.values())  # of the benchmarks run now
    meta = next((r["meta"] for r in results.values() if "meta" in r), {})
    if a.only and (out / f"{name}.json").is_file():  # some benchmarks again: the others' results stay
        earlier = json.loads((out / f"{name}.json").read_text())["results"]
        meta = meta or next((r["meta"] for r in earlier.values() if "meta" in r), {})
        results = {**{int(k): v for k, v in earlier.items()}, **results}
    (out / f"{name}.json").write_text(json.dumps({"machine": a.machine, "quick": a.quick,
                                                  "results": {str(k): v for k, v in results.items()}}, indent=2))
    md = table(results, a.machine, meta)
    (out / f"{name}.md").write_text(md)
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
