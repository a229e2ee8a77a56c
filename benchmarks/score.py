"""How long `python -m avkd_jax.score` takes on the public test lists, with random maps.

    python benchmarks/score.py --metadata=../shared/metadata

Writes random 7×7 S/τ maps for every pair of each protocol (VGG-SS: 5,158 positives;
Extended VGG-SS: and 5,158 negatives; IS3: 6,480 instances), runs the scorer's command
on them, one process each as a user runs it, and prints one row per protocol: pairs,
wall seconds (start-up included), pairs/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from avkd_jax.eval import annotations, is3, maps_file  # noqa: E402


def runs(meta: str) -> list:
    """(protocol, keys, scorer flags) of each timed run."""
    vggss = annotations.read_test_ids(os.path.join(meta, "vggss_test.csv"))
    negatives = annotations.read_negatives(os.path.join(meta, "vggss_test_plus_silent.csv"))
    common = [
        f"--annotations={os.path.join(meta, 'vggss.json')}",
        f"--test_list={os.path.join(meta, 'vggss_test.csv')}",
    ]
    is3_json = os.path.join(meta, "is3_synthetic3240_bbox.json")
    return [
        ("vggss", vggss, common),
        (
            "extended_vggss",
            vggss + [annotations.pair_key(*p) for p in negatives],
            common + [f"--negatives={os.path.join(meta, 'vggss_test_plus_silent.csv')}"],
        ),
        ("is3", list(is3.load_is3(is3_json)), [f"--annotations={is3_json}"]),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--metadata", default=os.path.join(REPO, "..", "shared", "metadata"))
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print("| protocol | pairs | seconds | pairs/s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, keys, flags in runs(args.metadata):
            path = os.path.join(tmp, f"{name}.npz")
            maps_file.write_maps(path, {k: rng.normal(size=(7, 7)) / 0.03 for k in keys})
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "avkd_jax.score", f"--protocol={name}", f"--maps={path}"]
                + flags
                + [f"--out={os.path.join(tmp, name + '.json')}"],
                cwd=REPO,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            seconds = time.perf_counter() - start
            print(f"| {name} | {len(keys)} | {seconds:.1f} | {len(keys) / seconds:.0f} |")


if __name__ == "__main__":
    main()
