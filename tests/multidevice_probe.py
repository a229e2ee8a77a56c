"""Runs a tiny AVC's train step on fixed batches and prints losses and parameters as JSON.

Run in a fresh process (the device count is fixed when JAX starts):
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multidevice_probe.py

Two measurements: `losses` / `grad_norms` are steps taken from the same initial state on
three different batches (what one update computes, with nothing carried over), and
`chained_losses` / `first_params` / `params` come from two consecutive steps.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from helpers.configs import tiny_config  # pylint: disable=g-import-not-at-top

from avkd_jax import input_pipeline, models, sharding, train  # pylint: disable=g-import-not-at-top
from avkd_jax import state as train_state  # pylint: disable=g-import-not-at-top


def main():
    config = tiny_config("/nonexistent")
    model = models.create_model(config)
    mesh = sharding.create_mesh()
    state = train_state.restore_or_init(model, config, mesh, _NoCheckpoints(), jax.random.key(0))
    step = train.compile_train_step(model, config, mesh)
    data = sharding.batch_sharded(mesh)
    rng = np.random.default_rng(0)
    batches = [
        input_pipeline.make_global(
            {
                "image": rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8),
                "audio": rng.integers(-8000, 8000, (8, 11025), dtype=np.int16),
            },
            data,
        )
        for _ in range(3)
    ]
    losses, grad_norms = [], []
    for batch in batches:
        # The step donates its state: hand it a copy so `state` stays the initial one.
        _, metrics = step(jax.tree.map(jnp.copy, state), batch)
        losses.append(float(metrics["loss"]))
        grad_norms.append(float(metrics["grad_norm"]))
    chained, sampled = [], []
    for batch in batches[:2]:
        state, metrics = step(state, batch)
        chained.append(float(metrics["loss"]))
        flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state["params"])])
        sampled.append(flat[::97].tolist())
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "losses": losses,
                "grad_norms": grad_norms,
                "chained_losses": chained,
                "first_params": sampled[0],
                "params": sampled[1],
            }
        )
    )


class _NoCheckpoints:
    directory = None

    def latest_step(self):
        return None


if __name__ == "__main__":
    main()
