"""The train state, made in one place: fresh, with the pretrained visual trunk, restored
from a checkpoint, or imported from a converted `.npz`; its optimizer and step size.

The state is a plain dict: `params`, `batch_stats`, `opt_state` (Adam's), `step` (int32 []).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from absl import logging

from avkd_jax import checkpoints, models, pretrained, sharding


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with a unit step: `train.train_step` scales the update by `learning_rate(...)`,
    so the schedule lives outside the optimizer state and a checkpoint restores under
    either schedule."""
    del config
    return optax.adam(1.0)


def learning_rate(config, step, total_steps):
    """The step size at `step` (0-based, any shape): config.learning_rate, or for
    config.lr_schedule == 'cosine' the same decayed to 0 along a half cosine over
    `total_steps`."""
    if config.lr_schedule == "constant":
        return jnp.asarray(config.learning_rate, jnp.float32)
    if config.lr_schedule == "cosine":
        if not total_steps:
            raise ValueError("config.lr_schedule='cosine' needs the run's total number of steps")
        progress = jnp.minimum(jnp.asarray(step, jnp.float32) / total_steps, 1.0)
        return config.learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    raise ValueError(
        f"config.lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}"
    )


def init_state(model, config, rng) -> dict:
    """A fresh train state: `models.init_variables`, Adam's zero moments, step 0."""
    variables = models.init_variables(model, config, rng)
    return from_variables(variables, config)


def from_variables(variables, config) -> dict:
    """The train state at step 0 of `{'params', 'batch_stats'}` (Adam's moments at zero: a
    later --mode=train fine-tunes from there)."""
    params = variables["params"]
    return {
        "params": params,
        "batch_stats": variables["batch_stats"],
        "opt_state": make_optimizer(config).init(params),
        "step": jnp.zeros([], jnp.int32),
    }


def abstract_state(model, config, mesh) -> dict:
    """`init_state`'s pytree as `jax.ShapeDtypeStruct`s, replicated on `mesh`."""
    replicated = sharding.replicated(mesh)
    shapes = jax.eval_shape(functools.partial(init_state, model, config), jax.random.key(0))
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
    )


def fresh_state(model, config, mesh, rng, init_visual_npz=None) -> dict:
    """`init_state` replicated on `mesh`, with the visual trunk from `init_visual_npz` (a
    converted ResNet18) when given."""
    replicated = sharding.replicated(mesh)
    state = jax.jit(functools.partial(init_state, model, config), out_shardings=replicated)(rng)
    if init_visual_npz:
        state = with_pretrained_visual_trunk(state, init_visual_npz, config, replicated)
    return state


def restore_or_init(
    model, config, mesh, manager, rng, init_visual_npz=None, *, resume=False
) -> dict:
    """The newest checkpoint of `manager` that restores (`checkpoints.restore_newest`), else
    `fresh_state`, replicated on `mesh`.

    Args:
      resume: for training, which goes on from the restored step: the newer, damaged
        checkpoints are moved aside (`checkpoints.move_aside`) so that it can save again.
    Raises:
      CheckpointRestoreError: checkpoints exist but none restores.
    """
    if manager.latest_step() is not None:
        step, state, skipped = checkpoints.restore_newest(
            manager, abstract_state(model, config, mesh)
        )
        if resume:
            checkpoints.move_aside(manager, skipped)
            logging.info("Resuming from checkpoint step %d in %s", step, manager.directory)
        else:
            logging.info("Using checkpoint step %d of %s", step, manager.directory)
        return state
    return fresh_state(model, config, mesh, rng, init_visual_npz)


def with_pretrained_visual_trunk(state, path, config, sharding) -> dict:
    """`state` with the visual student's ResNet18 trunk (parameters and BatchNorm statistics)
    taken from a converted `.npz` (docs/design.md, Model and losses: ImageNet
    initialisation). Adam's moments start at zero whatever the parameters, so the optimiser
    state stays as it is."""
    trunk = pretrained.load_resnet18_npz(path, width=config.model.width)
    logging.info("Visual trunk initialised from %s", path)
    state = dict(state)
    for collection in ("params", "batch_stats"):
        tree = dict(state[collection])
        tree["visual"] = dict(tree["visual"])
        tree["visual"]["imgnet"] = jax.device_put(trunk[collection], sharding)
        state[collection] = tree
    return state


def import_npz(config, workdir, npz) -> str:
    """--mode=import: a whole student from an `.npz` (`python -m teachers.convert_avc`, the
    authors' released checkpoint) → `workdir` with config.json and a checkpoint at step 0,
    which --mode=eval and `avkd_jax.localize` read. Returns the checkpoint folder."""
    os.makedirs(workdir, exist_ok=True)
    with checkpoints.open_manager(workdir, config) as manager:
        if manager.latest_step() is not None:
            raise FileExistsError(
                f"{manager.directory} already holds a checkpoint (step "
                f"{manager.latest_step()}): import into a fresh --workdir."
            )
        if config.model.dtype != "float32":
            # The authors' weights are evaluated in their arithmetic, whatever the config
            # trains in: --mode=eval and localize read the dtype from this run's config.json.
            logging.info("Importing into float32 (the config says %s)", config.model.dtype)
            config = config.copy_and_resolve_references()
            config.model.dtype = "float32"
        model = models.create_model(config)
        variables = pretrained.load_avc_npz(npz, model, config)
        checkpoints.save_config(config, workdir)
        replicated = sharding.replicated(sharding.create_mesh())
        state = jax.device_put(from_variables(variables, config), replicated)
        manager.save(0, args=ocp.args.StandardSave(state))
        logging.info("Imported %s into %s (step 0)", npz, manager.directory)
        return str(manager.directory)
