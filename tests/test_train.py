"""Training: 4 devices equal 1, resume after a stop, NaN stops training, the learning-rate
schedule."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers.configs import random_batch, tiny_config

from avkd_jax import checkpoints, models, train
from avkd_jax import state as train_state

HERE = os.path.dirname(os.path.abspath(__file__))


def run_probe(devices):
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        # Several devices always run XLA's convolutions: so must one, for the same numbers.
        AVKD_JAX_CONV="xla",
    )
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "multidevice_probe.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(HERE),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_give_the_single_device_losses():
    one, four = run_probe(1), run_probe(4)
    assert (one["devices"], four["devices"]) == (1, 4)
    # One update from the same state: the loss (negatives, BatchNorm statistics) is over
    # the global batch either way, so it is the same number up to float32 summation order.
    # That noise (~5e-7 in the embeddings with batch statistics) is multiplied by 1/τ = 33
    # in the logits: the losses (8–12 here) agree to 1e-5 relative (seen: ≤ 7e-6).
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(four["grad_norms"], one["grad_norms"], rtol=1e-4)
    # Chained steps drift a little more: Adam's first step moves each weight by about
    # lr·sign(g), and the sign of a near-zero gradient is decided by summation order, so
    # after one step the parameters agree to 1e-6 but for a few (seen: 2 of 355 k, by
    # 2·lr). Such a flip moves the second step's updates of the weights after it by a
    # little (seen: up to 6e-5 after two steps, in a third of the audio tower's weights).
    # Seen: 8e-6 relative on the second loss.
    assert one["chained_losses"][0] == one["losses"][0]
    np.testing.assert_allclose(four["chained_losses"], one["chained_losses"], rtol=2e-5, atol=0)
    first = np.abs(np.asarray(four["first_params"]) - np.asarray(one["first_params"]))
    assert np.mean(first > 1e-6) < 1e-3
    assert first.max() <= 2.01e-3  # 2·lr: a flipped sign at most.
    diff = np.abs(np.asarray(four["params"]) - np.asarray(one["params"]))
    assert diff.max() < 1e-4


def final_params(workdir):
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    restored = manager.restore(manager.latest_step())
    return manager.latest_step(), restored["params"]


@pytest.mark.slow
def test_stopped_run_resumes_from_its_checkpoint(tiny, tmp_path):
    straight = str(tmp_path / "straight")
    train.train_and_evaluate(tiny, straight)

    stopped = str(tmp_path / "stopped")
    first = tiny.copy_and_resolve_references()
    first.num_epochs = 1  # Stops after 6 steps, checkpointed at 3 and 6.
    train.train_and_evaluate(first, stopped)
    assert final_params(stopped)[0] == 6
    train.train_and_evaluate(tiny, stopped)  # Resumes at step 6, runs to 12.

    step_a, params_a = final_params(straight)
    step_b, params_b = final_params(stopped)
    assert step_a == step_b == 12
    leaves_a = [np.asarray(x) for x in jax.tree.leaves(params_a)]
    leaves_b = [np.asarray(x) for x in jax.tree.leaves(params_b)]
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert os.path.exists(os.path.join(stopped, "results.json"))


@pytest.mark.slow
def test_nan_loss_stops_training(tiny, tmp_path):
    bad = tiny.copy_and_resolve_references()
    bad.learning_rate = float("nan")
    with pytest.raises(train.NonFiniteLossError, match="Loss became nan"):
        train.train_and_evaluate(bad, str(tmp_path / "nan"))


def test_eval_without_checkpoint_says_so(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint in .*checkpoints"):
        train.evaluate_workdir(tiny, str(tmp_path / "empty"))


def test_workdir_of_another_model_is_refused(tiny, tmp_path):
    checkpoints.save_config(tiny, str(tmp_path))
    other = tiny.copy_and_resolve_references()
    other.model.width = 0.5
    with pytest.raises(ValueError, match="use a fresh --workdir"):
        checkpoints.save_config(other, str(tmp_path))


def test_config_json_is_never_seen_half_written(tiny, tmp_path, monkeypatch):
    """The other processes of a multi-process run read config.json as process 0 writes
    it (a CI run once failed on an empty file): the file appears whole, by a rename, and
    a second writer replaces it whole."""
    import builtins

    opened = []
    real_open = builtins.open

    def recording_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            opened.append(os.path.basename(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    checkpoints.save_config(tiny, str(tmp_path))
    checkpoints.save_config(tiny, str(tmp_path))
    assert opened and "config.json" not in opened
    assert sorted(os.listdir(tmp_path)) == ["config.json"]
    with real_open(tmp_path / "config.json") as f:
        assert json.load(f) == json.loads(tiny.to_json())


def test_learning_rate_schedules(tiny):
    """config.lr_schedule against the formula: constant, or a half cosine from
    config.learning_rate at step 0 to 0 at the last step."""
    c = tiny.copy_and_resolve_references()
    c.learning_rate = 2e-3
    steps = np.arange(0, 12)
    assert np.all(np.asarray(train_state.learning_rate(c, steps, 10)) == np.float32(2e-3))
    c.lr_schedule = "cosine"
    expected = 2e-3 * 0.5 * (1 + np.cos(np.pi * np.minimum(steps / 10, 1)))
    np.testing.assert_allclose(
        train_state.learning_rate(c, steps, 10), expected, rtol=1e-5, atol=1e-10
    )
    with pytest.raises(ValueError, match="total number of steps"):
        train_state.learning_rate(c, 0, None)
    c.lr_schedule = "linear"
    with pytest.raises(ValueError, match="config.lr_schedule must be 'constant' or 'cosine'"):
        train_state.learning_rate(c, 0, 10)


def test_train_step_moves_weights_by_the_scheduled_rate(tmp_path):
    """Adam's first step moves each weight by lr·g/(|g| + ε), i.e. by lr wherever the
    gradient is clear of ε = 1e-8: the median move of the weights is the scheduled rate,
    set here by the state's step."""
    config = tiny_config(tmp_path)
    config.learning_rate = 1e-3
    model = models.create_model(config)
    start = jax.jit(lambda rng: train_state.init_state(model, config, rng))(jax.random.key(0))
    batch = random_batch(config)
    total = 8
    cases = (("constant", (6,)), ("cosine", (0, 2, 8)))
    for schedule, steps in cases:
        config.lr_schedule = schedule
        step = jax.jit(
            functools.partial(train.train_step, model=model, config=config, total_steps=total)
        )
        for k in steps:
            lr = 1e-3 if schedule == "constant" else 1e-3 * 0.5 * (1 + np.cos(np.pi * k / total))
            new, metrics = step(dict(start, step=jnp.int32(k)), batch)
            moves = np.concatenate(
                [
                    np.abs(np.asarray(a) - np.asarray(b)).ravel()
                    for a, b in zip(
                        jax.tree.leaves(new["params"]), jax.tree.leaves(start["params"])
                    )
                ]
            )
            np.testing.assert_allclose(float(metrics["learning_rate"]), lr, rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(np.median(moves), lr, rtol=1e-3, atol=1e-12)
            # Up to float32 rounding of the parameters themselves (|θ| < 1: ≤ 6e-8).
            assert moves.max() <= lr + 1e-7
            assert int(new["step"]) == k + 1
