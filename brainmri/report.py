"""The study report: report.md and one self-contained report.html (figures embedded, prints to PDF), in the
study's order, each section with the study's number beside the reproduced one under the study's random split
and under group-aware splits, and what differs and why. Every number is read from the steps' own outputs
(cv_summary.json, evaluation/test/summary.json, comparison.json, binary/binary_summary.json, ...)."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .study import Study, Step, done_record, duration, restored, skip_reason, step_config

SPLITS = ("random", "group")
# The study's numbers (course study brief): what it reported, and the settings it reported them with.
STUDY = {
    "images": 3264,
    "classes": {"glioma_tumor": 926, "meningioma_tumor": 937, "no_tumor": 500, "pituitary_tumor": 901},
    "test_accuracy": 0.98,
    "no_tumor_after": 890,
    "binary": {"split": 1.00, "external": 0.87, "planes": 0.96},
}
STUDY_SETTINGS = {"backbone": "efficientnetb0", "weights": "imagenet", "image_size": 150, "epochs": 12, "folds": 5,
                  "batch_size": 32, "optimizer": "adam"}
NOT_RUN = "not run in this plan"
MAX_WIDTH = 1400  # px: larger figures are scaled down before embedding, which keeps the HTML file small


# ---- a small document model, rendered twice ------------------------------------------------------------------

@dataclass
class Doc:
    blocks: list = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str], title: str = "") -> None:
        if items:
            self.blocks.append(("ul", title, items))

    def table(self, header: list[str], rows: list[list], versus: bool = True) -> None:
        """A table; `versus`: its second column is the study's, shaded in HTML."""
        if rows:
            self.blocks.append(("table", header, [[str(c) for c in r] for r in rows], versus))

    def figures(self, items: list[tuple[Path | None, str]], columns: int = 2) -> None:
        """Figures side by side in HTML, `columns` to a row (one figure in two columns: half the width)."""
        items = [(p, c) for p, c in items if p is not None and Path(p).is_file()]
        if items:
            self.blocks.append(("figs", items, columns))


def to_markdown(doc: Doc, base: Path) -> str:
    out = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append((f"{block[1]}\n\n" if block[1] else "") + "\n".join(f"* {i}" for i in block[2]))
        elif kind == "table":
            rows = [block[1], ["---"] * len(block[1]), *block[2]]
            out.append("\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows))
        elif kind == "figs":
            out.append("\n\n".join(f"![{c}]({_rel(p, base)})\n*{c}*" for p, c in block[1]))
    return "\n\n".join(out) + "\n"


def _rel(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def _inline(text: str) -> str:
    """Escape, then the two marks the report uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def embedded_png(path: Path) -> str:
    """A figure as a data: URI, scaled down to MAX_WIDTH px when wider."""
    import cv2

    data = Path(path).read_bytes()
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None and img.shape[1] > MAX_WIDTH:
        scale = MAX_WIDTH / img.shape[1]
        img = cv2.resize(img, (MAX_WIDTH, round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 62em; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; margin: 0 0 .3em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .7em 0; font-size: .9em; }
th, td { border: 1px solid #c8c8c8; padding: .28em .6em; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
table.versus th:nth-child(2), table.versus td:nth-child(2) { background: #fbf5e1; }
code { font-size: .92em; background: #f3f3f3; padding: 0 .2em; }
div.differs > p { margin-bottom: .3em; font-weight: 600; }
div.differs > ul { background: #f7f7f7; border-left: 3px solid #8a8a8a; padding: .5em 1em .5em 2em; margin-top: 0; }
.figs { display: grid; gap: 1em; margin: .8em 0; }
figure { margin: 0; break-inside: avoid; }
figure img { width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
@page { size: A4; margin: 15mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  table, figure, div.differs { break-inside: avoid; }
}
"""


def to_html(doc: Doc, title: str) -> str:
    body = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            items = "".join(f"<li>{_inline(i)}</li>" for i in block[2])
            if block[1]:  # a titled list: kept on one page with its title
                body.append(f'<div class="differs"><p>{_inline(block[1])}</p><ul>{items}</ul></div>')
            else:
                body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(c)}</th>" for c in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in block[2])
            css = ' class="versus"' if block[3] else ""
            body.append(f"<table{css}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figs":
            figs = "".join(f'<figure><img src="{embedded_png(p)}" alt="{html.escape(c)}">'
                           f"<figcaption>{_inline(c)}</figcaption></figure>" for p, c in block[1])
            body.append(f'<div class="figs" style="grid-template-columns: repeat({block[2]}, 1fr)">{figs}</div>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>\n'
            f"<body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---- reading the steps' outputs ------------------------------------------------------------------------------

def pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def pm(mean, std) -> str:
    return "n/a" if mean is None else f"{100 * mean:.1f} ± {100 * (std or 0):.1f}%"


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class Results:
    """What the finished steps wrote, looked up by report section and split."""

    study: Study

    def steps(self, section: str, kind: str | None = None) -> list[Step]:
        return [s for s in self.study.plan.steps if s.options.get("report") == section and kind in (None, s.kind)]

    def out(self, step: Step, key: str) -> Path | None:
        record = done_record(self.study, step)
        value = ((record or {}).get("outputs") or {}).get(key)
        return restored(self.study, value) if value else None

    def config(self, run: Path | None) -> dict:
        return yaml.safe_load((run / "config.yaml").read_text()) if run and (run / "config.yaml").is_file() else {}

    def split(self, step: Step) -> str | None:
        """The split a step ran with (its run's config), or, unfinished, the one it would run with."""
        ran = self.config(self.out(step, "run")).get("split")
        if ran or step.kind not in ("train", "binary"):
            return ran
        return step_config(self.study.plan, step, self.study.repo).split

    def by_split(self, section: str, kind: str) -> dict[str, Step]:
        """The section's steps of `kind`, one per split (the first of each)."""
        found: dict[str, Step] = {}
        for s in self.steps(section, kind):
            found.setdefault(self.split(s), s)
        return found

    def state(self, step: Step | None) -> str:
        """'done', or why a cell is empty."""
        if step is None:
            return NOT_RUN
        if done_record(self.study, step):
            return "done"
        if skip_reason(self.study, step, set()):
            return "skipped: no `--external` folder"
        return "not finished"


def _cells(results: Results, steps: dict[str, Step], value) -> list[str]:
    """One cell per split: value(step) where that step finished, else why there is none."""
    return [value(steps[s]) if s in steps and results.state(steps[s]) == "done" else results.state(steps.get(s))
            for s in SPLITS]


HEADER = ["", "study", "reproduced, `split=random` (the study's)", "reproduced, `split=group` (this project's)"]


# ---- what differs from the study ------------------------------------------------------------------------------

def key_run(results: Results) -> Path | None:
    """The key experiment's run (the first finished CV step), whose settings describe the whole study folder."""
    runs = [results.out(s, "run") for s in results.steps("cv", "train")]
    return next((r for r in runs if r is not None), None)


def settings_differences(results: Results) -> list[str]:
    """Each setting that differs from the study's, with why it matters."""
    run = key_run(results)
    cfg, env = results.config(run), (read_json(run / "env.json") if run else None) or {}
    data = (done_record(results.study, results.study.step("data")) or {}).get("outputs", {})  # plans start with it
    out = []
    if data.get("source") == "synthetic":
        out.append(f"**Data**: the synthetic MRI-like demo set ({data.get('per_class')} images per class, drawn "
                   "lesions), not the Kaggle slices: these numbers check that every step runs, not how well a "
                   "model reads MRI.")
    elif data.get("subset_fraction"):
        out.append(f"**Data**: a class-stratified {data['subset_fraction']:.0%} share of the images "
                   f"({data.get('images')}), so that the plan fits a CPU; fewer images, noisier numbers.")
    if cfg and cfg.get("weights") != "imagenet":
        out.append(f"**No ImageNet weights** (`weights={cfg.get('weights')}`): the network starts from random "
                   "features. The study's transfer learning starts from features learnt on a million photographs; "
                   "from scratch, a few thousand slices and a few epochs reach far less.")
    changed = [f"{k} {cfg.get(k)} (study: {v})" for k, v in STUDY_SETTINGS.items()
               if cfg and k != "weights" and cfg.get(k) != v]
    if changed:
        out.append("**CPU-sized settings**: " + ", ".join(changed) + ": chosen to finish in minutes on a CPU "
                   "(`--quick`); the full plan (`python reproduce.py`) keeps the study's.")
    if env and not env.get("gpus"):
        out.append(f"**Device**: CPU only ({env.get('cpu_count')} cores, no GPU).")
    return out


def short_settings(results: Results) -> str:
    cfg = results.config(key_run(results))
    if not cfg:
        return "settings unknown (the key run did not finish)"
    return (f"{cfg['backbone']}, weights {cfg['weights']}, {cfg['image_size']} px, {cfg['epochs']} epochs, "
            f"{cfg['folds']} folds")


# ---- the sections, in the study's order ------------------------------------------------------------------------

def section_overview(doc: Doc, r: Results) -> None:
    """Title, what the study did, how this report was made, and the headline table."""
    study = r.study
    seconds = sum((done_record(study, s) or {}).get("seconds", 0) for s in study.plan.steps)
    done = sum(1 for s in study.plan.steps if done_record(study, s))
    doc.h(1, "Brain tumor MRI classification: the study, reproduced")
    doc.p("The course study classified 3,264 Kaggle MRI slices (glioma, meningioma, pituitary tumor, no tumor) "
          "with EfficientNetB0 transfer learning from ImageNet (150 px, Adam, 12 epochs, batch 32, a stratified "
          "90/10 split) and reported **98% test accuracy**. Each section below puts the study's number beside "
          "the same experiment reproduced twice: with the study's plain random split (`split=random`), and with "
          "this project's near-duplicate-aware split (`split=group`), which keeps copies and adjacent slices of "
          "one scan on one side of every split.")
    doc.table(["", "this report"], [
        ["plan", f"`{study.plan.path.name}` ({done} of {len(study.plan.steps)} steps done)"],
        ["data", "synthetic demo set" if study.data is None else f"`{study.data}`"],
        ["model", short_settings(r)],
        ["time of the steps", duration(seconds)],
        ["study folder", f"`{study.out}`"]], versus=False)
    doc.h(2, "The study's numbers beside this run's")
    doc.table(HEADER, headline_rows(r))
    doc.bullets(settings_differences(r), "What differs from the study in every section, and why")


def headline_rows(r: Results) -> list[list[str]]:
    """The first screen's table: the study's reported numbers and this run's, by split."""
    rows = [["4 classes: hold-out test accuracy", pct(STUDY["test_accuracy"], 0),
             *_cells(r, r.by_split("test", "evaluate"), lambda s: pct(evaluation_summary(r, s).get("accuracy")))],
            ["4 classes: cross-validation, mean validation accuracy", "reported (figure in the study)",
             *_cells(r, r.by_split("cv", "train"), lambda s: pm(*cv_mean(r, s, "val_accuracy")))]]
    for task, label in (("split", "tumor vs no tumor: a split of the same data"),
                        ("external", "tumor vs no tumor: external yes/no set"),
                        ("planes", "tumor vs no tumor: axial-only training, sagittal + coronal test")):
        steps = _binary_steps(r, task)
        if steps:
            rows.append([label, pct(STUDY["binary"][task], 0),
                         *_cells(r, steps, lambda s: pct(binary_summary(r, s)["at_validation_threshold"]["accuracy"]))])
    return rows


def cv_mean(r: Results, step: Step, key: str) -> tuple[float | None, float | None]:
    summary = read_json(r.out(step, "run") / "cv_summary.json") or {}
    return (summary.get("mean") or {}).get(key), (summary.get("std") or {}).get(key)


def evaluation_summary(r: Results, step: Step) -> dict:
    return read_json(r.out(step, "evaluation") / "test" / "summary.json") or {}


def binary_summary(r: Results, step: Step) -> dict:
    return read_json(r.out(step, "run") / "binary" / "binary_summary.json") or {}


def _binary_steps(r: Results, task: str) -> dict[str, Step]:
    found: dict[str, Step] = {}
    for s in r.steps("binary", "binary"):
        if s.options["task"] == task:
            found.setdefault(r.split(s), s)
    return found


def section_data(doc: Doc, r: Results) -> None:
    doc.h(2, "1. The data")
    run = key_run(r)
    audit = (read_json(run / "audit.json") if run else None) or {}
    counts = data_counts(run)
    doc.table(["", "study", "this run's data"], [
        ["images", f"{STUDY['images']:,}", f"{audit.get('images', 'n/a'):,}" if audit else "n/a"],
        *[[c, str(n), str(counts.get(c, "n/a"))] for c, n in STUDY["classes"].items()],
        ["exact duplicates (byte-identical files)", "not checked",
         f"{audit.get('exact_duplicate_sets', 'n/a')} sets, {audit.get('images_in_exact_duplicate_sets', 'n/a')} "
         "images"],
        ["near-duplicate groups (copies, adjacent slices)", "not checked",
         f"{audit.get('near_duplicate_groups', 'n/a')} groups, {audit.get('images_in_near_duplicate_groups', 'n/a')} "
         "images"],
        ["Testing images with a near-duplicate in Training", "not checked",
         str(audit.get("testing_with_near_duplicate_in_training_total", "n/a"))]])
    doc.bullets(["The study split the images at random. Near-duplicates then land on both sides of a split, and a "
                 "model is partly tested on images it has trained on: the sections below measure how much that "
                 "adds, by running the key experiments under both splits."], "What differs and why")


def data_counts(run: Path | None) -> dict[str, int]:
    """Images per class in the run (all roles of fold 0), from its data_summary.csv."""
    import csv

    path = run / "data_summary.csv" if run else None
    if not path or not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["fold"] == "0"]
    return {c: sum(int(row[c]) for row in rows) for c in STUDY["classes"] if rows and c in rows[0]}


def section_cv(doc: Doc, r: Results) -> None:
    doc.h(2, "2. Cross-validation (the study: EfficientNetB0, Adam, 5 folds)")
    steps = r.by_split("cv", "train")
    rows = [[f"mean validation {label}", "reported (figure in the study)",
             *_cells(r, steps, lambda s, k=key: _metric(*cv_mean(r, s, k), k))]
            for label, key in (("accuracy", "val_accuracy"), ("loss", "val_loss"), ("precision (macro)",
                               "val_precision"), ("recall (macro)", "val_recall"))]
    doc.table(HEADER, rows)
    doc.figures([(r.out(s, "run") / "figures" / "curves_accuracy_loss.png", f"Accuracy and loss per epoch, `split={k}`")
                 for k, s in steps.items() if r.out(s, "run")])
    items = []
    means = {k: cv_mean(r, s, "val_accuracy")[0] for k, s in steps.items() if r.out(s, "run")}
    if means.get("random") is not None and means.get("group") is not None:
        gap = means["random"] - means["group"]
        why = ("what near-duplicates shared between training and validation folds add" if gap > 0 else
               "no gain from the shared near-duplicates at these settings: the fold-to-fold noise is larger")
        items.append(f"Validation accuracy {pct(means['random'])} with random folds against {pct(means['group'])} "
                     f"with group-aware folds ({100 * gap:+.1f} points): {why}.")
    items.append(f"Settings: {short_settings(r)} (see the top).")
    doc.bullets(items, "What differs and why")


def _metric(mean, std, key: str) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std or 0:.3f}" if key.endswith("loss") else pm(mean, std)


def section_test(doc: Doc, r: Results) -> None:
    doc.h(2, "3. The hold-out test set (10%)")
    steps = r.by_split("test", "evaluate")

    def cells(value) -> list[str]:
        return _cells(r, steps, lambda s: value(evaluation_summary(r, s)))

    doc.table(HEADER, [
        ["accuracy of the fold ensemble (95% CI)", pct(STUDY["test_accuracy"], 0), *cells(_with_ci)],
        ["mean accuracy of the fold models", "", *cells(lambda m: pct(m.get("mean_fold_accuracy")))],
        ["macro F1 (ensemble)", "", *cells(lambda m: pct(m.get("macro_f1")))],
        ["test images", "327 (10% of 3,264)", *cells(lambda m: str(m.get("images")))],
        ["with a near-duplicate in training", "not checked",
         *cells(lambda m: _share(m.get("with_near_duplicate_in_training")))],
        ["without", "", *cells(lambda m: _share(m.get("without_near_duplicate_in_training")))]])
    doc.figures([(r.out(s, "evaluation") / "test" / "figures" / "confusion_ensemble.png",
                  f"Confusion matrix of the fold ensemble, `split={k}`")
                 for k, s in steps.items() if r.out(s, "evaluation")])
    items = [f"Settings: {short_settings(r)} (see the top)."]
    random = steps.get("random")
    if random is not None and r.out(random, "evaluation"):
        m = evaluation_summary(r, random)
        w, wo = m.get("with_near_duplicate_in_training") or {}, m.get("without_near_duplicate_in_training") or {}
        items.insert(0, f"**Leakage**: with `split=random`, {w.get('images', 0)} of {m.get('images')} test images "
                        f"have a near-duplicate in training; accuracy on them {pct(w.get('accuracy'))}, on the "
                        f"others {pct(wo.get('accuracy'))}. `split=group` keeps each near-duplicate group on one "
                        "side, so its figure is the one to expect on new patients.")
    doc.bullets(items, "What differs and why")


def _with_ci(summary: dict) -> str:
    lo, hi = summary.get("accuracy_ci95_groups") or (None, None)
    return f"{pct(summary.get('accuracy'))} ({pct(lo)}-{pct(hi)})"


def _share(part: dict | None) -> str:
    """'N images, accuracy A' of a part of the test set (with or without near-duplicates in training)."""
    return f"{part['images']} images, accuracy {pct(part.get('accuracy'))}" if part and part.get("images") else "none"


def comparison_rows(r: Results, step: Step) -> list[dict]:
    return (read_json(r.out(step, "comparison") / "comparison.json") or {}).get("rows", []) \
        if r.out(step, "comparison") else []


def section_compare(doc: Doc, r: Results, section: str, title: str, study_says: dict[str, str],
                    value) -> dict[str, list[dict]]:
    """A comparison section: one row per variant, one column per split; returns the rows by split."""
    doc.h(2, title)
    steps = {}
    for s in r.steps(section, "compare"):
        first = r.study.step(next(iter(s.options["runs"].values())))  # the variants share their split
        steps.setdefault(r.split(first), s)
    by_split = {k: {row["variant"]: row for row in comparison_rows(r, s)} for k, s in steps.items()}
    names = list(dict.fromkeys([*study_says] + [n for rows in by_split.values() for n in rows]))
    table = [[n, study_says.get(n, ""),
              *[value(by_split[k][n]) if n in by_split.get(k, {}) else r.state(steps.get(k)) for k in SPLITS]]
             for n in names]
    doc.table(["variant", *HEADER[1:]], table)
    return by_split


def _variant(row: dict) -> str:
    diff = (row.get("vs_reference") or {}).get("mean_difference")
    versus = "" if diff is None else f"; {100 * diff:+.1f} points vs the reference"
    val = pm(row.get("val_accuracy_mean"), row.get("val_accuracy_std"))
    return f"val {val}, test {pct(row.get('test_accuracy_mean'))}{versus}"


def section_optimizers(doc: Doc, r: Results) -> None:
    section_compare(doc, r, "optimizers", "4. Adam against SGD (same folds)",
                    {"adam": "the final model's optimizer", "sgd": "compared (SGD, momentum 0.9)"}, _variant)
    doc.bullets([f"Settings: {short_settings(r)}; SGD at learning rate 0.01 with momentum 0.9, on the same folds.",
                 "Few folds and epochs decide little: the p-values are in each comparison.md."], "What differs and why")


def section_gradcam(doc: Doc, r: Results) -> None:
    doc.h(2, "5. Grad-CAM: where the model looked")
    figs, notes = [], []
    for s in r.steps("gradcam", "gradcam"):
        folder, record = r.out(s, "gradcam"), done_record(r.study, s) or {}
        what = "correctly classified" if s.options["images"] == "correct" else "misclassified"
        if folder is not None:
            figs.append((folder / "grid.png", f"Grad-CAM of {record['outputs'].get('images')} {what} test images "
                                              f"(fold 0's model, `split={r.split(s)}`)"))
        elif record:
            notes.append(f"{what}: {record['outputs'].get('note')}")
    doc.p("The study showed Grad-CAM heat maps of test images, misclassified ones included.")
    doc.figures(figs, 1)
    doc.bullets(notes + [f"Settings: {short_settings(r)}: a weaker model's maps are coarser and less "
                         "often on the lesion."], "What differs and why")


def section_balance(doc: Doc, r: Results) -> None:
    steps = r.steps("balance", "augment")
    augment = steps[0] if steps else None
    record = (done_record(r.study, augment) or {}).get("outputs", {}) if augment else {}
    by_split = section_compare(doc, r, "balance", "6. Balancing no_tumor by rotation and translation",
                               {"original": "500 no_tumor images",
                                "balanced": f"{STUDY['no_tumor_after']} no_tumor images (rotated, shifted copies)"},
                               lambda row: f"{_variant(row)}; no_tumor test recall "
                                           f"{pct(row.get('test_recall_no_tumor'))}")
    if record:
        doc.p(f"{record.get('class')}: {record.get('before')} images brought up to {record.get('target')} "
              f"(the study: 500 to {STUDY['no_tumor_after']}); copies are trained on only where their source image is.")
    data = r.out(augment, "data") if augment else None
    doc.figures([(data / "contact_sheet.png" if data else None, "Augmented copies, each right of its source")], 2)
    items = [f"Settings: {short_settings(r)}."]
    if not by_split:
        items.insert(0, "The comparison did not run.")
    doc.bullets(items, "What differs and why")


def section_planes(doc: Doc, r: Results) -> None:
    doc.h(2, "7. Axial-only training, sagittal and coronal test")
    planes_steps, steps = r.steps("planes", "planes"), r.by_split("planes", "train")
    source = ((done_record(r.study, planes_steps[0]) or {}).get("outputs", {}).get("source")
              if planes_steps else None)
    doc.table(HEADER, [
        ["validation accuracy (axial slices, CV)", "", *_cells(r, steps, lambda s: pm(*cv_mean(r, s, "val_accuracy")))],
        ["test accuracy, sagittal + coronal slices (mean of the fold models)", "see section 9 (96%, tumor vs no tumor)",
         *_cells(r, steps, lambda s: pm(*cv_mean(r, s, "test_accuracy")))]])
    doc.bullets([f"Planes: {source or 'n/a'}. The Kaggle images carry no plane labels; the estimator is 94.8% "
                 "accurate on hand-checked slices, so some test slices are in fact axial.",
                 f"Settings: {short_settings(r)}."], "What differs and why")


def section_backbones(doc: Doc, r: Results) -> None:
    def value(row):
        val = pm(row.get("val_accuracy_mean"), row.get("val_accuracy_std"))
        return (f"{row.get('params_trainable', 0):,} trainable; val {val}, test {pct(row.get('test_accuracy_mean'))}; "
                f"{row.get('seconds_per_epoch', 0):.0f} s/epoch")

    section_compare(doc, r, "backbones", "8. EfficientNetB0 against EfficientNetB2 and frozen VGG16",
                    {"efficientnetb0": "4.0M trainable parameters; the final model",
                     "efficientnetb2": "7.7M trainable; no clear gain",
                     "vgg16_frozen": "frozen base; worse (too few trainable parameters)"}, value)
    cfg = r.config(key_run(r))
    items = ["Without ImageNet weights a frozen VGG16 base is a random feature extractor, and EfficientNets "
             "trained from scratch for a few epochs often stay at the majority class: the table checks the "
             "machinery and the costs, not the study's ranking." if cfg.get("weights") != "imagenet" else
             "Same folds and settings for every backbone (checked by compare_backbones.py)."]
    doc.bullets(items, "What differs and why")


def section_binary(doc: Doc, r: Results) -> None:
    doc.h(2, "9. Tumor against no tumor (one sigmoid unit)")

    def value(s):
        m = binary_summary(r, s)
        at = m.get("at_validation_threshold") or {}
        auc = "n/a" if at.get("auc") is None else f"{at['auc']:.3f}"
        return (f"{pct(at.get('accuracy'))} (AUC {auc}; {at.get('images')} images, "
                f"{m.get('near_duplicates_in_training', 0)} with a copy in training)")

    rows = []
    for task, label in (("split", "a split of the same data"), ("external", "external yes/no set"),
                        ("planes", "axial-only training, sagittal + coronal test")):
        steps = _binary_steps(r, task)
        if steps:
            rows.append([label, pct(STUDY["binary"][task], 0), *_cells(r, steps, value)])
    doc.table(["test set", *HEADER[1:]], rows)
    figs = [(r.out(s, "run") / "binary" / "figures" / "roc.png", f"ROC, {s.options['task']}, `split={k}`")
            for task in BINARY_ORDER for k, s in _binary_steps(r, task).items() if r.out(s, "run")]
    doc.figures(figs, 3)
    items = ["Accuracy at the decision threshold chosen on the validation folds (never on the test images)."]
    split = {k: binary_summary(r, s) for k, s in _binary_steps(r, "split").items() if r.out(s, "run")}
    if "random" in split:
        m, clean = split["random"], split["random"].get("without_copies_in_training") or {}
        rest = f"; accuracy on the others {pct(clean.get('accuracy'))}" if clean else ""
        items.append(f"**Leakage**: with `split=random`, {m.get('near_duplicates_in_training')} of "
                     f"{m['at_validation_threshold']['images']} test images of the split task have a near-duplicate "
                     f"in training{rest}. `split=group` leaves none; the study's 100% was measured the random way.")
    if not any(s.options["task"] == "external" and done_record(r.study, s) for s in r.steps("binary", "binary")):
        items.append("The external set was not given (`--external DIR`, or `--download`): that task was skipped.")
    items.append(f"Settings: {short_settings(r)}.")
    doc.bullets(items, "What differs and why")


BINARY_ORDER = ("split", "external", "planes")
SECTIONS = (section_overview, section_data, section_cv, section_test, section_optimizers, section_gradcam,
            section_balance, section_planes, section_backbones, section_binary)


def write_report(study: Study) -> tuple[Path, Path]:
    """report.md and report.html in the study folder, from whatever steps are done."""
    r, doc = Results(study), Doc()
    for section in SECTIONS:
        section(doc, r)
    md, page = study.out / "report.md", study.out / "report.html"
    md.write_text(to_markdown(doc, study.out))
    page.write_text(to_html(doc, "Brain tumor MRI: the study, reproduced"))
    return md, page
