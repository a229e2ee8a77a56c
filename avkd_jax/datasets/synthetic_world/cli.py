"""The command line that writes a world: python -m avkd_jax.datasets.synthetic_world."""

from __future__ import annotations

import argparse
from typing import Sequence

from avkd_jax.datasets.synthetic_world.sound import SAMPLE_RATE
from avkd_jax.datasets.synthetic_world.writer import write_world

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avkd_jax.datasets.synthetic_world",
        description="Write the synthetic audio-visual world in the Flickr-SoundNet layout.",
    )
    parser.add_argument("--root", required=True, help="output directory")
    parser.add_argument("--num_train", type=int, default=10000)
    parser.add_argument("--num_test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--sample_rate", type=int, default=SAMPLE_RATE)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    stats = write_world(
        args.root,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        sample_rate=args.sample_rate,
    )
    print(f"{args.root}: {stats['scenes']} scenes, {stats['files_written']} files written")
    return 0
