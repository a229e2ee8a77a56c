"""A run on disk: `<workdir>/config.json` and the orbax checkpoints in `<workdir>/checkpoints`.

Training, evaluation and `avkd_jax.localize` all read and write runs through this module.
A damaged newest checkpoint is skipped for the newest one that restores (with a warning
naming it); training moves the skipped ones to `checkpoints/damaged/<step>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from avkd_jax import default_config, files
from avkd_jax.errors import CheckpointRestoreError, RunError

# The config fields a checkpoint's arrays depend on: a workdir refuses a config that
# changes them.
MODEL_KEYS = ("model", "image_size", "sample_rate", "audio_seconds")
# Fields under those that change how the arrays are computed, not the arrays.
NOT_MODEL_KEYS = {"model": ("conv_impl",)}
DAMAGED = "damaged"


def checkpoint_manager(workdir, config) -> ocp.CheckpointManager:
    """orbax's manager of `<workdir>/checkpoints`. Every process makes one and calls `save`
    together (orbax coordinates the write: process 0 writes replicated arrays and the
    metadata); a step's folder appears under its final name only once complete, so a run
    killed mid-save resumes from the previous checkpoint."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
    )


@contextlib.contextmanager
def open_manager(workdir, config):
    """`checkpoint_manager(workdir, config)`, closed (its saves finished) when the block ends."""
    manager = checkpoint_manager(workdir, config)
    try:
        yield manager
    finally:
        manager.close()


def step_dir(manager, step: int) -> str:
    """The folder of checkpoint `step`."""
    return os.path.join(str(manager.directory), str(step))


def restore_newest(manager, abstract) -> tuple[int, dict, list[int]] | None:
    """The newest checkpoint of `manager` that restores into `abstract`.

    Args:
      abstract: the state's pytree of `jax.ShapeDtypeStruct` (with shardings).
    Returns:
      (its step, the restored state, the newer steps skipped as unrestorable, newest
      first), or None when `manager` holds no checkpoint.
    Raises:
      CheckpointRestoreError: no checkpoint restores (the message names the folder and why
        each step failed).
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    failed = {}
    _drop_late_reads()
    for step in steps:
        try:
            state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax and TensorStore raise bare Exceptions on damaged files.
            failed[step] = _first_line(e)
            logging.warning(
                "%s: cannot restore this checkpoint (%s)", step_dir(manager, step), failed[step]
            )
            continue
        if failed:
            logging.warning(
                "Using checkpoint step %d of %s, the newest that restores: skipped step(s) %s",
                step,
                manager.directory,
                ", ".join(map(str, failed)),
            )
        return step, state, list(failed)
    raise CheckpointRestoreError(
        f"{manager.directory}: no checkpoint restores ("
        + "; ".join(f"step {s}: {why}" for s, why in failed.items())
        + "). Their files are damaged or belong to another model: use a fresh --workdir."
    )


def move_aside(manager, steps) -> None:
    """Moves the folders of `steps` to `<checkpoints>/damaged/<step>` (process 0, then every
    process reloads): orbax saves no step at or below its newest, so a run resuming from
    an older step would otherwise never checkpoint again."""
    if not steps:
        return
    damaged = os.path.join(str(manager.directory), DAMAGED)
    if jax.process_index() == 0:
        os.makedirs(damaged, exist_ok=True)
        for step in steps:
            target = os.path.join(damaged, str(step))
            suffix = 1
            while os.path.exists(target):  # A step damaged again after an earlier move.
                target, suffix = os.path.join(damaged, f"{step}.{suffix}"), suffix + 1
            shutil.move(step_dir(manager, step), target)
            logging.warning("Moved the damaged checkpoint step %d to %s", step, target)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

        multihost_utils.sync_global_devices("damaged checkpoints moved")
    manager.reload()


def check_config(config, workdir) -> None:
    """Raises ValueError when `workdir`'s config.json is not JSON, or describes another model
    (`MODEL_KEYS`) than `config`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        try:
            old = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}: not valid JSON ({e}): not a workdir this code wrote; use a "
                "fresh --workdir."
            ) from None
    new = json.loads(config.to_json())
    for key in MODEL_KEYS:
        if _model_part(old.get(key), key) != _model_part(new[key], key):
            raise ValueError(
                f"{workdir} holds a run with {key}={old.get(key)}, but this config "
                f"has {key}={new[key]}: use a fresh --workdir."
            )


def _model_part(value, key):
    """`value` (config[key] as JSON) without the fields that leave the arrays unchanged."""
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k not in NOT_MODEL_KEYS.get(key, ())}


def save_config(config, workdir, write=True):
    """Writes config.json (what eval and localize rebuild the model from) after
    `check_config`; with `write=False` only checks."""
    check_config(config, workdir)
    if write and jax.process_index() == 0:
        # Written aside and renamed: the other processes read this file at their start,
        # and must never see it half written.
        files.write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """`WORKDIR/config.json` (written by training and --mode=import) as a ConfigDict."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise RunError(
            f"{path} does not exist: {workdir} is not a training workdir (train with "
            "python -m avkd_jax.main, or import a checkpoint with --mode=import)"
        )
    with open(path) as f:
        try:
            config = ml_collections.ConfigDict(json.load(f))
        except json.JSONDecodeError as e:
            raise RunError(f"{path}: not valid JSON ({e})") from None
    # A run written before a field existed gets its default (e.g. og_alpha).
    defaults = default_config.base_config().copy_and_resolve_references()
    for key in defaults:
        if key not in config:
            config[key] = defaults[key]
    return config


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _late_read(unraisable) -> bool:
    """A TensorStore read that finished after its restore failed, reporting to the asyncio
    loop orbax has closed: nothing is lost, the restore already raised."""
    value = unraisable.exc_value
    return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def _drop_late_reads() -> None:
    """Drops `_late_read` reports for the rest of the process: a failed restore's arrive
    from TensorStore's threads at any time, even before the restore raises."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_late_reads", False):
        return

    def hook(unraisable):
        if not _late_read(unraisable):
            previous(unraisable)

    hook.drops_late_reads = True
    sys.unraisablehook = hook
