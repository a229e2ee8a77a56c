"""The paper's Table 2 on the synthetic world: which teacher helps the student.

Trains the student four times per seed (no teacher, audio teacher only, visual teacher
only, both: α2 and α3 set to 0 or left at the config's values) and prints a mean ± std
table (`avkd_jax/tables.py`) of cIoU, AUC, mean cIoU, the share of maps peaking on the
sounding object and the audio-swap score on the synthetic test set. Runs go through
`benchmarks/repeat.py`'s `run_seed`: variant v, seed k trains in `<workdir>/<v>/seed<k>`,
and a run finished with the same command is not trained again, so an interrupted
ablation continues where it stopped. Arguments after `--` go to every
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
sys.path.insert(0, str(REPO))

from avkd_jax import tables  # noqa: E402


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
    for slug, name, audio_off, visual_off in tables.ABLATION_VARIANTS:
        for seed in range(args.seeds):
            sets = repeat.run_seed(
                config,
                seed,
                os.path.join(workdir, slug),
                [*extra, *tables.ablation_args(audio_off, visual_off)],
            )
            summaries = next(iter(sets.values()))
            rows.setdefault(name, []).append(summaries["AVC"])
    for key, name in tables.ABLATION_BASELINES:
        if key in summaries:
            rows[name] = [summaries[key]]

    caption = (
        f"Synthetic world, {os.path.relpath(config, REPO)}"
        + (f" with {' '.join(extra)}" if extra else "")
        + f"; training seeds 0..{args.seeds - 1}; mean ± std (sample std) of the AVC student"
        + "; the audio-blind baselines once (they do not train)."
    )
    repeat.write_table(tables.ablation_table(rows, caption), os.path.join(workdir, "ablation.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
