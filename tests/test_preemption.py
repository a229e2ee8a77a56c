"""Preemption: a run stopped by SIGTERM, then by kill -9, ends where an uninterrupted one does.

One process with 4 CPU devices, no `jax.distributed`: SIGTERM is caught by the trainer's
own handler. Checkpoints every 4 steps of 12 (6 per epoch). The interrupted run gets
SIGTERM early in epoch 0 (it saves at the step it reached and exits with status 75), is
resumed, gets kill -9 in epoch 1 (it loses the steps since checkpoint 8), and is resumed
to the end. The data order is a pure function of (seed, epoch) and a resumed epoch skips
the steps already taken, so every step sees the batch it would have seen: the losses and
the final parameters are those of the uninterrupted run bit for bit.
"""

import os
import signal

import numpy as np
import pytest
from helpers import main_runs

pytestmark = pytest.mark.slow


def test_sigterm_and_kill_resume_to_the_uninterrupted_parameters(tmp_path_factory, tmp_path):
    config_file, cache = main_runs.four_shard_world(tmp_path_factory)
    straight = str(tmp_path / "straight")
    run = main_runs.Run(config_file, cache, straight, log_level=None)
    assert run.finish() == [0], run.tail()
    _check_quiet_terminal(run.log(), os.path.join(straight, "log.txt"))

    stopped = str(tmp_path / "stopped")
    run = main_runs.Run(config_file, cache, stopped)
    run.wait_for("[2] train/")  # Logged while step 3 runs: mid-epoch 0.
    run.signal(signal.SIGTERM)
    assert run.finish() == [75], run.tail()
    first, _ = main_runs.checkpoint(stopped)
    assert 2 < first < 6
    assert f"Preempted at step {first}: checkpoint saved in" in run.log()
    assert "Run the same command again to resume from it." in run.log()

    run = main_runs.Run(config_file, cache, stopped)
    run.wait_for("[9] train/")  # Logged while step 10 runs: mid-epoch 1.
    run.signal(signal.SIGKILL)
    assert run.finish() == [-signal.SIGKILL]
    assert f"Resuming from checkpoint step {first}" in run.log()
    assert main_runs.checkpoint(stopped)[0] == 8, "kill -9 came after the last checkpoint"

    run = main_runs.Run(config_file, cache, stopped)
    assert run.finish() == [0], run.tail()
    assert "Resuming from checkpoint step 8" in run.log()

    want, got = main_runs.losses(straight), main_runs.losses(stopped)
    assert sorted(got) == sorted(want) == list(range(1, 13))
    for step, values in got.items():  # Steps 9 and later ran twice: identically.
        assert values == want[step] * len(values), step
    _, params_a = main_runs.checkpoint(straight)
    step, params_b = main_runs.checkpoint(stopped)
    assert step == 12
    for a, b in zip(params_a, params_b, strict=True):
        np.testing.assert_array_equal(a, b)


def _check_quiet_terminal(shown: str, log_file: str) -> None:
    """By default the terminal has our lines only (a plain progress line per step here, as
    12 steps make tenths of one step, and one per checkpoint); log.txt has every library's."""
    lines = shown.splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert [p.split(":")[0] for p in progress] == [
        f"step {s}/12 ({100 * s / 12:.0f}%)" for s in range(1, 13)
    ]
    assert all(", ETA " in p and " samples/s" in p for p in progress)
    saved = [line for line in lines if line.startswith("Saved checkpoint step")]
    assert [int(line.split()[3]) for line in saved] == [4, 8, 12]
    assert len(lines) - len(progress) - len(saved) <= 4, shown  # Start, random weights, files.
    for library in ("orbax", "checkpoint_manager", "logging_writer", "port.cc", "libtpu"):
        assert library not in shown, library
    kept = open(log_file).read()
    for library in ("checkpoint_manager.py", "logging_writer.py:48] [12] train/", "port.cc"):
        assert library in kept, library
    assert "Saved checkpoint step 12" in kept and "step 12/12" not in kept
