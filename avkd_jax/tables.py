"""The paper's mean ± std tables over repeated runs, from their `results.json` summaries.

Table 1 (the AVC student) and Table 3 (its object-guided variants) per test set
(`paper_tables`, for `benchmarks/repeat.py`), and Table 2, which teacher helps the student
(`ablation_table`, for `benchmarks/ablation.py`, with the flags that turn each teacher
off). Text only: the benchmarks train the runs.
"""

from __future__ import annotations

import numpy as np

# (title, variants): the paper's Table 1 (AVC) and Table 3 (object-guided).
TABLES = (
    ("Table 1: the AVC student", ("AVC",)),
    ("Table 3: object-guided inference", ("OG-AVC", "OG-AVC-DETR")),
)

# (slug, row name, α2 off, α3 off): the rows of the paper's Table 2.
ABLATION_VARIANTS = (
    ("base", "base (no teacher)", True, True),
    ("audio", "audio teacher", False, True),
    ("visual", "visual teacher", True, False),
    ("both", "both teachers", False, False),
)
# The audio-blind baselines every run also evaluates (the same maps in every run, so
# taken from the last): their swap score is the world's chance level.
ABLATION_BASELINES = (
    ("centre_prior", "centre prior (audio-blind)"),
    ("every_object", "every object (audio-blind)"),
)
# (summary key, column, decimals); a column a run's summary lacks shows "–".
ABLATION_COLUMNS = (
    ("ciou", "cIoU@0.5", 1),
    ("auc", "AUC", 1),
    ("mean_ciou", "mean cIoU", 1),
    ("peak_on_sounding", "peak on sounding %", 1),
    ("swap_score", "audio swap", 3),
)


def mean_std(values, digits: int = 1) -> str:
    """`mean ± std` with `digits` decimals (sample std, ddof=1; 0 for a single run)."""
    v = np.asarray(values, dtype=np.float64)
    std = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def paper_tables(runs: list[dict], train_set: str) -> str:
    """The paper's Tables 1 and 3 over `runs` (one `results.json` 'sets' dict per seed):
    per variant and test set, cIoU@0.5 and AUC as mean ± std over the seeds that have it.
    A variant missing from some seed is reported with the count it has and, when it was
    skipped, the reason."""
    set_names = list(dict.fromkeys(name for sets in runs for name in sets))
    lines = []
    for title, variants in TABLES:
        lines += [f"### {title}", "", "| Model | Train set | Test | cIoU | AUC | runs |"]
        lines.append("|---|---|---|---|---|---|")
        notes = []
        for variant in variants:
            for set_name in set_names:
                rows = [
                    sets[set_name][variant] for sets in runs if variant in sets.get(set_name, {})
                ]
                reasons = {
                    sets[set_name].get("skipped", {}).get(variant)
                    for sets in runs
                    if set_name in sets
                } - {None}
                notes += [f"- {variant} on {set_name} skipped: {why}" for why in sorted(reasons)]
                if not rows:
                    continue
                lines.append(
                    f"| {variant} | {train_set} | {set_name} | "
                    f"{mean_std([r['ciou'] for r in rows])} | "
                    f"{mean_std([r['auc'] for r in rows])} | {len(rows)}/{len(runs)} |"
                )
        lines += ["", *notes, ""] if notes else [""]
    return "\n".join(lines).rstrip() + "\n"


def ablation_args(audio_off: bool, visual_off: bool) -> list[str]:
    """The `avkd_jax.main` flags that turn the audio (α2) and / or visual (α3) teacher off."""
    return ["--config.alpha_audio=0"] * audio_off + ["--config.alpha_visual=0"] * visual_off


def ablation_table(rows: dict[str, list[dict]], caption: str) -> str:
    """Markdown: one row per variant, mean ± std over its runs' AVC summaries."""
    lines = [
        caption,
        "",
        "| variant | " + " | ".join(label for _, label, _ in ABLATION_COLUMNS) + " | runs |",
        "|---" * (len(ABLATION_COLUMNS) + 2) + "|",
    ]
    for name, results in rows.items():
        cells = []
        for key, _, digits in ABLATION_COLUMNS:
            values = [r[key] for r in results if key in r]
            cells.append(mean_std(values, digits=digits) if values else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(results)} |")
    return "\n".join(lines) + "\n"
