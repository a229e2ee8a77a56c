"""Result files of an evaluation: results.json / results.md (the tables), cious.json (the
per-sample cIoUs) and the pictures (`pictures.write_pictures`)."""

from __future__ import annotations

import json
import os

import jax

from avkd_jax import files, pictures
from avkd_jax.eval import maps_file
from avkd_jax.eval.evaluator import SKIPPED


def results_table(results: dict) -> str:
    """A Markdown table of variant → cIoU, AUC, mean cIoU, N (and the synthetic extras),
    one row per variant scored (the `SKIPPED` entry is not a variant)."""
    results = {k: v for k, v in results.items() if k != SKIPPED}
    cols = ["ciou", "auc", "mean_ciou", "n", "peak_on_sounding", "swap_score", "border_peak"]
    cols += ["ext_ap", "ext_max_f1", "ext_loc_acc"]
    # pIA at each image's own map's median: the fixed S > 0 needs a calibrated scale of S.
    cols += ["pia_silence_thrciou", "pia_noise_thrciou", "pia_offscreen_thrciou"]
    cols += ["iiou", "iauc"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    names = {
        "ciou": "cIoU@0.5",
        "auc": "AUC",
        "mean_ciou": "mean cIoU",
        "n": "N",
        "peak_on_sounding": "peak on sounding %",
        "swap_score": "audio swap",
        "border_peak": "border peak %",
        "ext_ap": "ext. AP",
        "ext_max_f1": "ext. max-F1",
        "ext_loc_acc": "ext. LocAcc",
        "pia_silence_thrciou": "pIA silence ↓",
        "pia_noise_thrciou": "pIA noise ↓",
        "pia_offscreen_thrciou": "pIA off-screen ↓",
        "iiou": "iIoU",
        "iauc": "iAUC",
    }
    lines = [
        "| variant | " + " | ".join(names[c] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for variant, r in results.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(
                "–"
                if v is None
                else (f"{v}" if c == "n" else f"{v:.2f}" if c != "swap_score" else f"{v:.3f}")
            )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peak_histogram_text(hist) -> str:
    """The peak histogram as rows of counts, one grid row per line."""
    return "\n".join(" ".join(f"{c:4d}" for c in row) for row in hist)


def results_markdown(sets: dict, step: int, peak_grids: bool = True) -> str:
    """The Markdown of `sets` (set name → `evaluate_split`'s results): one table per set,
    the reasons for skipped variants under it, and (`peak_grids`) where the maps peak."""
    lines = [f"# Evaluation at step {step}"]
    for set_name, results in sets.items():
        lines += ["", f"## {set_name}", "", results_table(results)]
        skipped = results.get(SKIPPED, {})
        if skipped:
            lines += ["", "Not evaluated:", ""]
            lines += [f"- {variant}: {why}" for variant, why in skipped.items()]
        for name, r in results.items():
            if peak_grids and name != SKIPPED and "peak_hist" in r:
                lines += [
                    "",
                    f"Map peaks of {name} over the {len(r['peak_hist'])}×"
                    f"{len(r['peak_hist'][0])} grid:",
                    "",
                    "```",
                    peak_histogram_text(r["peak_hist"]),
                    "```",
                ]
    return "\n".join(lines) + "\n"


def write_results(workdir: str, sets: dict, step: int) -> str:
    """Writes `results.json` (`{"step", "sets": {set: {variant: summary, 'skipped':
    {variant: reason}}}}`) and `results.md` (`results_markdown`) in `workdir`; returns the
    Markdown text.

    Args:
      sets: evaluation set name (e.g. 'flickr_test') → `evaluate_split`'s results.
    """
    text = results_markdown(sets, step)
    if jax.process_index() == 0:
        files.write_text(
            os.path.join(workdir, "results.json"),
            json.dumps({"step": step, "sets": sets}, indent=1),
        )
        files.write_text(os.path.join(workdir, "results.md"), text)
    return text


def files_note(workdir: str, log_file: str | None = None) -> str:
    """Where a run's results went, in a line for the terminal."""
    where = [f"results {os.path.join(workdir, 'results.md')} (.json, cious.json)"]
    where.append(f"pictures {os.path.join(workdir, 'pictures')}{os.sep}")
    if log_file:
        where.append(f"log {log_file}")
    return "Wrote " + ", ".join(where) + "."


def write_cious(workdir: str, sets: dict, step: int) -> str:
    """Writes the per-sample cIoUs beside results.json (which stays small) as `cious.json`:
    `{"step", "sets": {set: {"ids": [N], "cious": {variant: [N]}}}}`.

    Args:
      sets: set name → `SplitEval`.
    Returns:
      the file's path.
    """
    path = os.path.join(workdir, "cious.json")
    doc = {
        "step": step,
        "sets": {name: {"ids": e.ids, "cious": e.cious} for name, e in sets.items()},
    }
    if jax.process_index() == 0:
        files.write_text(path, json.dumps(doc))
    return path


def maps_path(workdir: str, set_name: str) -> str:
    """Where `config.save_maps` writes a set's maps: `<workdir>/maps/<set>.npz`."""
    return os.path.join(workdir, "maps", f"{set_name}.npz")


def write_all(workdir: str, evaluated: dict, step: int) -> tuple[dict, str]:
    """results.{json,md}, cious.json, <workdir>/pictures/ and (`config.save_maps`)
    <workdir>/maps/ of `evaluated` (set name → `SplitEval`); returns (set → variant →
    summary, the Markdown for the terminal: results.md without its peak grids)."""
    results = {name: e.results for name, e in evaluated.items()}
    write_results(workdir, results, step)
    text = results_markdown(results, step, peak_grids=False)
    write_cious(workdir, evaluated, step)
    if jax.process_index() == 0:
        for name, e in evaluated.items():
            pictures.write_pictures(os.path.join(workdir, "pictures"), name, e)
            if e.maps is not None:
                os.makedirs(os.path.join(workdir, "maps"), exist_ok=True)
                maps_file.write_maps(maps_path(workdir, name), e.maps)
    return results, text
