"""Repeated runs: N seeds of a config trained and evaluated, then mean ± std tables in the
paper's format (Table 1: the AVC student; Table 3: its object-guided variants;
`avkd_jax/tables.py` writes them).

    python benchmarks/repeat.py --config=configs/synthetic.py --seeds=10
    python benchmarks/repeat.py --config=configs/flickr10k.py --seeds=10 \\
        --workdir=runs/repeat_flickr10k -- --config.data_dir=/data/tfds \\
        --config.manual_dir=/data/flickr --config.object_npz=resnet18.npz \\
        --config.eval_sets="('flickr_test','vggss_test')" \\
        --config.eval_manual_dirs.vggss_test=/data/vggsound

Seed k trains in `<workdir>/seed<k>` with `--config.seed=k` (initialisation and data
order); arguments after `--` go to every `python -m avkd_jax.main` call. A run that
finished with the same command (its `repeat.json`) is not trained again; an interrupted
one resumes from its checkpoint. Writes `<workdir>/repeat.md` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avkd_jax import tables  # noqa: E402

MARKER = "repeat.json"


def seed_dir(workdir: str, seed: int) -> str:
    return os.path.join(workdir, f"seed{seed}")


def finished_sets(path: str, command: list[str]) -> dict | None:
    """The `results.json` sets of a run that `command` finished, else None."""
    marker = os.path.join(path, MARKER)
    if not os.path.exists(marker):
        return None
    with open(marker) as f:
        if json.load(f).get("command") != command:
            return None
    with open(os.path.join(path, "results.json")) as f:
        return json.load(f)["sets"]


def run_seed(config: str, seed: int, workdir: str, extra: list[str]) -> dict:
    """Trains and evaluates one seed unless it is finished; returns its results' sets."""
    path = seed_dir(workdir, seed)
    command = ["-m", "avkd_jax.main", f"--config={config}", f"--workdir={path}"]
    command += [f"--config.seed={seed}", *extra]
    sets = finished_sets(path, command)
    if sets is not None:
        print(f"[repeat] seed {seed}: finished in {path}", flush=True)
        return sets
    print(f"[repeat] seed {seed}: python {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, *command], check=True, cwd=REPO)
    tmp = os.path.join(path, MARKER + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"command": command}, f)
    os.replace(tmp, os.path.join(path, MARKER))
    return finished_sets(path, command)


def write_table(text: str, path: str) -> None:
    """Prints `text` and writes it to `path` (a temporary name, renamed when complete)."""
    print(text)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(f"written to {path}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python benchmarks/repeat.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--seeds", type=int, required=True, help="runs: seeds 0..N-1")
    parser.add_argument("--workdir", help="default: runs/repeat_<config name>")
    parser.add_argument("--train_set", help="the tables' train-set name (default: the config's)")
    args = parser.parse_args(own)
    name = pathlib.Path(args.config).stem
    workdir = os.path.abspath(args.workdir or REPO / "runs" / f"repeat_{name}")
    config = os.path.abspath(args.config)
    runs = [run_seed(config, seed, workdir, extra) for seed in range(args.seeds)]
    text = (
        f"## {name}: {args.seeds} runs (training seeds 0..{args.seeds - 1}), mean ± std\n\n"
        + tables.paper_tables(runs, args.train_set or name)
    )
    write_table(text, os.path.join(workdir, "repeat.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
