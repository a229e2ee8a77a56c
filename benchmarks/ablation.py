"""The paper's Table 2 on the synthetic world: which teacher helps the student.

Trains the demo's student four times per seed (no teacher, audio teacher only, visual
teacher only, both) and prints a mean ± std table of cIoU, AUC, mean cIoU and the
audio-swap score on the synthetic test set. Runs are kept in `--workdir` and a finished
run is not trained again, so an interrupted ablation continues where it stopped.

    python benchmarks/ablation.py --seeds=3 --workdir=runs/ablation
"""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

# (name, α2, α3): the rows of the paper's Table 2.
VARIANTS = (
    ("base (no teacher)", 0.0, 0.0),
    ("audio teacher", None, 0.0),
    ("visual teacher", 0.0, None),
    ("both teachers", None, None),
)
COLUMNS = (("ciou", "cIoU@0.5"), ("auc", "AUC"), ("mean_ciou", "mean cIoU"))


def load_config(path):
    spec = importlib.util.spec_from_file_location("ablation_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def run_dir(workdir, variant, seed):
    slug = variant.split(" ")[0]
    return os.path.join(workdir, f"{slug}_seed{seed}")


def finished_results(path, total_steps):
    """The AVC row of a finished run's results.json, or None."""
    f = os.path.join(path, "results.json")
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        data = json.load(fh)
    if data.get("step") != total_steps:
        return None
    sets = data.get("sets") or {data.get("split", "test"): data["results"]}
    return next(iter(sets.values()))["AVC"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "synthetic.py"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workdir", default=str(REPO / "runs" / "ablation"))
    args = p.parse_args(argv)

    config = load_config(args.config)
    steps_per_epoch = config.dataset_kwargs.num_train // config.batch_size
    total_steps = steps_per_epoch * config.num_epochs
    rows = {}
    for name, a2, a3 in VARIANTS:
        for seed in range(args.seeds):
            path = run_dir(args.workdir, name, seed)
            result = finished_results(path, total_steps)
            if result is None:
                cmd = [
                    sys.executable,
                    "-m",
                    "avkd_jax.main",
                    f"--config={args.config}",
                    f"--workdir={path}",
                    f"--config.seed={seed}",
                    f"--config.alpha_audio={config.alpha_audio if a2 is None else a2}",
                    f"--config.alpha_visual={config.alpha_visual if a3 is None else a3}",
                ]
                print(f"[ablation] {name}, seed {seed}: {' '.join(cmd[1:])}", flush=True)
                subprocess.run(cmd, check=True, cwd=REPO)
                result = finished_results(path, total_steps)
            rows.setdefault(name, []).append(result)

    lines = [
        f"Synthetic world, config {os.path.relpath(args.config, REPO)}, {args.seeds} seeds "
        f"(training seeds 0..{args.seeds - 1}), {total_steps} steps each; mean ± std.",
        "",
        "| variant | " + " | ".join(label for _, label in COLUMNS) + " | audio swap | seeds |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for name, results in rows.items():
        cells = []
        for key, _ in COLUMNS:
            v = np.array([r[key] for r in results])
            cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}")
        swap = np.array([r.get("swap_score", np.nan) for r in results])
        cells.append(f"{swap.mean():.3f} ± {swap.std(ddof=1) if len(swap) > 1 else 0:.3f}")
        cells.append(str(len(results)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.workdir, "ablation.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
