"""The paper's Table 2 on the synthetic world: which teacher helps the student.

Trains the student four times per seed (no teacher, audio teacher only, visual teacher
only, both: α2 and α3 set to 0 or left at the config's values) and prints a mean ± std
table of cIoU, AUC, mean cIoU, the share of maps peaking on the sounding object and the
audio-swap score on the synthetic test set. Runs go
through `benchmarks/repeat.py`'s `run_seed`: variant v, seed k trains in
`<workdir>/<v>/seed<k>`, and a run finished with the same command is not trained again,
so an interrupted ablation continues where it stopped. Arguments after `--` go to every
`python -m avkd_jax.main` call (e.g. a smaller world for a quick table).

    python benchmarks/ablation.py --seeds=3
    python benchmarks/ablation.py --seeds=3 --workdir=runs/ablation_small -- \\
        --config.dataset_kwargs.num_train=1000 --config.num_epochs=5
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import repeat  # noqa: E402  (benchmarks/repeat.py)

REPO = pathlib.Path(__file__).resolve().parents[1]

# (slug, row name, α2 off, α3 off): the rows of the paper's Table 2.
VARIANTS = (
    ("base", "base (no teacher)", True, True),
    ("audio", "audio teacher", False, True),
    ("visual", "visual teacher", True, False),
    ("both", "both teachers", False, False),
)
# The audio-blind baselines every run also evaluates (the same maps in every run, so
# taken from the last): their swap score is the world's chance level.
BASELINES = (
    ("centre_prior", "centre prior (audio-blind)"),
    ("every_object", "every object (audio-blind)"),
)
# (summary key, column, decimals); a column a run's summary lacks shows "–".
COLUMNS = (
    ("ciou", "cIoU@0.5", 1),
    ("auc", "AUC", 1),
    ("mean_ciou", "mean cIoU", 1),
    ("peak_on_sounding", "peak on sounding %", 1),
    ("swap_score", "audio swap", 3),
)


def variant_args(audio_off: bool, visual_off: bool) -> list[str]:
    return ["--config.alpha_audio=0"] * audio_off + ["--config.alpha_visual=0"] * visual_off


def table(rows: dict[str, list[dict]], caption: str) -> str:
    """Markdown: one row per variant, mean ± std over its runs' AVC summaries."""
    lines = [
        caption,
        "",
        "| variant | " + " | ".join(label for _, label, _ in COLUMNS) + " | runs |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, results in rows.items():
        cells = []
        for key, _, digits in COLUMNS:
            values = [r[key] for r in results if key in r]
            cells.append(repeat.mean_std(values, digits=digits) if values else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(results)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(
        prog="python benchmarks/ablation.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--config", default=str(REPO / "configs" / "synthetic.py"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workdir", default=str(REPO / "runs" / "ablation"))
    args = p.parse_args(own)
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    config, workdir = os.path.abspath(args.config), os.path.abspath(args.workdir)

    rows = {}
    for slug, name, audio_off, visual_off in VARIANTS:
        for seed in range(args.seeds):
            sets = repeat.run_seed(
                config,
                seed,
                os.path.join(workdir, slug),
                [*extra, *variant_args(audio_off, visual_off)],
            )
            summaries = next(iter(sets.values()))
            rows.setdefault(name, []).append(summaries["AVC"])
    for key, name in BASELINES:
        if key in summaries:
            rows[name] = [summaries[key]]

    caption = (
        f"Synthetic world, {os.path.relpath(config, REPO)}"
        + (f" with {' '.join(extra)}" if extra else "")
        + f"; training seeds 0..{args.seeds - 1}; mean ± std (sample std) of the AVC student"
        + "; the audio-blind baselines once (they do not train)."
    )
    repeat.write_table(table(rows, caption), os.path.join(workdir, "ablation.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
