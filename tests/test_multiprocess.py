"""Several processes (docs/scaling_out.md): 2 processes × 2 CPU devices train as 1 process × 4 devices.

Both runs go through `python -m avkd_jax.main` on the same 4-shard world with
`input_groups=2`, so every step's global batch is the same; both use JAX's gloo CPU
collectives (the 4-device run as a one-process `jax.distributed` job) and the same
XLA:CPU thread pool (`main_runs`), so every step computes the same sums in the same order.
The 2 × 2 run is also preempted half-way (SIGTERM to process 1 only) and resumed: both
processes stop at the step JAX's preemption service agrees on, and both restore.
"""

import glob
import os
import signal

import numpy as np
import pytest
from helpers import main_runs

pytestmark = pytest.mark.slow


def test_two_processes_train_exactly_as_one(tmp_path_factory, tmp_path):
    config_file, cache = main_runs.four_shard_world(tmp_path_factory)
    one = str(tmp_path / "one_by_four")
    run = main_runs.Run(config_file, cache, one, processes=1, devices=4, distributed=True)
    assert run.finish() == [0], run.tail()

    two = str(tmp_path / "two_by_two")
    run = main_runs.Run(config_file, cache, two, processes=2, devices=2)
    run.wait_for("[2] train/", process=0)
    run.signal(signal.SIGTERM, process=1)  # A preemption notice reaches one host.
    assert run.finish() == [75, 75], run.tail(1)
    stopped, _ = main_runs.checkpoint(two)
    assert 2 < stopped < 12
    for p in (0, 1):
        assert f"Preempted at step {stopped}: checkpoint saved" in run.log(p)

    run = main_runs.Run(config_file, cache, two, processes=2, devices=2)
    assert run.finish() == [0, 0], run.tail(1)
    for p in (0, 1):  # Every process restores.
        assert f"Resuming from checkpoint step {stopped}" in run.log(p)
        assert f"Process {p} of 2: 2 local devices of 4; input groups [{p}] of 2" in run.log(p)

    # Only process 0 writes metrics: one event file per run.
    assert len(glob.glob(os.path.join(two, "events.out.tfevents.*"))) == 2
    # The same losses step for step and the same final parameters, bit for bit.
    want, got = main_runs.losses(one), main_runs.losses(two)
    assert sorted(want) == sorted(got) == list(range(1, 13))
    assert all(len(got[s]) == 1 for s in got)  # The preempted run logged up to its stop.
    assert [got[s] for s in range(1, 13)] == [want[s] for s in range(1, 13)]
    step_a, params_a = main_runs.checkpoint(one)
    step_b, params_b = main_runs.checkpoint(two)
    assert step_a == step_b == 12
    for a, b in zip(params_a, params_b, strict=True):
        np.testing.assert_array_equal(a, b)
