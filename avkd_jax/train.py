"""Training: a plain-dict state, one jitted update step, the loop, checkpoints, evaluation."""

import functools
import json
import os
import time

from absl import logging
from clu import metric_writers
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from avkd_jax import datasets
from avkd_jax import evaluate
from avkd_jax import input_pipeline
from avkd_jax import losses
from avkd_jax import models

P = jax.sharding.PartitionSpec


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def create_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process; the batch is split on `data`."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def warn_unused_hints(config) -> None:
    """Says that the config's teacher-hint weights (α2, α3) are not applied yet.

    Hint shards arrive with the teachers (issue #4); until then `loss_terms` is the
    contrastive loss alone, and the paper configs keep the paper's α values for then.
    """
    if config.teachers and (config.alpha_audio or config.alpha_visual):
        logging.warning(
            "Teachers %s requested (α2=%g, α3=%g) but hint extraction is not in "
            "this release: training with the contrastive loss alone.",
            tuple(config.teachers),
            config.alpha_audio,
            config.alpha_visual,
        )


def init_state(model, config, rng) -> dict:
    """The train state as a plain dict: params, batch_stats, opt_state, step."""
    variables = models.init_variables(model, config, rng)
    params = variables["params"]
    return {
        "params": params,
        "batch_stats": variables["batch_stats"],
        "opt_state": make_optimizer(config).init(params),
        "step": jnp.zeros([], jnp.int32),
    }


def make_optimizer(config) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def loss_terms(params, batch_stats, batch, *, model, config):
    """The total loss of DESIGN §3 over the global batch, and its terms."""
    (audio_emb, visual_map), new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats},
        batch["image"],
        batch["audio"],
        train=True,
        mutable=["batch_stats"],
    )
    sim = losses.similarity_maps(audio_emb, visual_map, config.tau)
    l_s = losses.contrastive_loss(sim)
    total = config.alpha_contrastive * l_s
    return total, ({"loss": total, "loss_contrastive": l_s}, new_vars["batch_stats"])


def train_step(state, batch, *, model, config):
    """One Adam step on the global batch. Returns the new state and scalar metrics."""
    grad_fn = jax.value_and_grad(
        functools.partial(loss_terms, model=model, config=config), has_aux=True
    )
    (_, (metrics, batch_stats)), grads = grad_fn(state["params"], state["batch_stats"], batch)
    updates, opt_state = make_optimizer(config).update(grads, state["opt_state"], state["params"])
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = {
        "params": optax.apply_updates(state["params"], updates),
        "batch_stats": batch_stats,
        "opt_state": opt_state,
        "step": state["step"] + 1,
    }
    return new_state, metrics


def compile_train_step(model, config, mesh):
    """`train_step` jitted for the mesh: replicated state (donated), batch on `data`."""
    replicated = jax.sharding.NamedSharding(mesh, P())
    data = jax.sharding.NamedSharding(mesh, P("data"))
    return jax.jit(
        functools.partial(train_step, model=model, config=config),
        in_shardings=(replicated, data),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def checkpoint_manager(workdir, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
    )


def restore_or_init(model, config, mesh, manager, rng) -> dict:
    """The latest checkpoint in `manager` if there is one, else a fresh state, replicated."""
    replicated = jax.sharding.NamedSharding(mesh, P())
    abstract = jax.eval_shape(functools.partial(init_state, model, config), rng)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
    )
    latest = manager.latest_step()
    if latest is not None:
        logging.info("Resuming from checkpoint step %d in %s", latest, manager.directory)
        return manager.restore(latest, args=ocp.args.StandardRestore(abstract))
    state = jax.jit(functools.partial(init_state, model, config), out_shardings=replicated)(rng)
    return state


def save_config(config, workdir, write=True):
    """Writes config.json (what eval and localize rebuild the model from); refuses a
    workdir trained with a different model."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        for key in ("model", "image_size", "sample_rate", "audio_seconds"):
            new = json.loads(config.to_json())[key]
            if old.get(key) != new:
                raise ValueError(
                    f"{workdir} holds a run with {key}={old.get(key)}, but this config "
                    f"has {key}={new}: use a fresh --workdir."
                )
    if write and jax.process_index() == 0:
        with open(path, "w") as f:
            f.write(config.to_json(indent=2))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the AVC student as `config` says, checkpointing and evaluating in `workdir`.

    Returns the last evaluation's results (variant → summary).
    """
    os.makedirs(workdir, exist_ok=True)
    save_config(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    mesh = create_mesh()
    if config.batch_size % jax.device_count():
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by the "
            f"{jax.device_count()} devices."
        )
    local_batch = config.batch_size // jax.process_count()

    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    num_train = builder.info.splits[config.train_split].num_examples
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train} training examples make no batch of {config.batch_size}.")
    total_steps = steps_per_epoch * config.num_epochs
    warn_unused_hints(config)

    model = models.create_model(config)
    manager = checkpoint_manager(workdir, config)
    state = restore_or_init(model, config, mesh, manager, jax.random.key(config.seed))
    step = int(state["step"])
    step_fn = compile_train_step(model, config, mesh)
    data_sharding = jax.sharding.NamedSharding(mesh, P("data"))
    logging.info(
        "%d train examples, %d steps per epoch, %d steps; starting at %d",
        num_train,
        steps_per_epoch,
        total_steps,
        step,
    )

    results = {}
    pending, t0, t0_step = None, time.perf_counter(), step
    for epoch in range(step // steps_per_epoch, config.num_epochs):
        ds = input_pipeline.train_dataset(builder, config, epoch, local_batch)
        ds = ds.skip(step - epoch * steps_per_epoch).take(steps_per_epoch)
        batches = input_pipeline.prefetch_to_device(
            iter(ds.as_numpy_iterator()), config.prefetch_batches, data_sharding
        )
        for batch in batches:
            state, metrics = step_fn(state, batch)
            step += 1
            # Read the previous step's metrics while this one runs: a NaN stops training one
            # step late at most, and the device never waits for the host.
            if pending is not None:
                t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
            pending = (step, metrics)
            if step % config.checkpoint_every_steps == 0 or step == total_steps:
                t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
                pending = None
                manager.save(step, args=ocp.args.StandardSave(state))
        if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
            if pending is not None:
                t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
                pending = None
            final = epoch + 1 == config.num_epochs
            results = evaluate_and_report(
                model, state, builder, config, mesh, workdir, baselines=final
            )
            writer.write_scalars(
                step, {f"eval/{k}": v for k, v in results["AVC"].items() if np.isscalar(v)}
            )
            writer.flush()
    if not results:  # Already trained to the end: report the final checkpoint again.
        logging.info("%s is already trained to step %d: evaluating it.", workdir, step)
        results = evaluate_and_report(model, state, builder, config, mesh, workdir)
    manager.wait_until_finished()
    writer.flush()
    return results


def variables_of(state) -> dict:
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


def evaluate_and_report(model, state, builder, config, mesh, workdir, baselines=True):
    """Evaluates the trained student (with `baselines`: beside an untrained student, the
    centre prior and the every-object map), writes results.{json,md}, prints the table."""
    variants = {"AVC": variables_of(state)}
    if baselines:
        replicated = jax.sharding.NamedSharding(mesh, P())
        variants["untrained"] = jax.jit(
            functools.partial(models.init_variables, model, config), out_shardings=replicated
        )(jax.random.key(config.seed + 1))
    results = evaluate.evaluate_split(model, variants, builder, config, mesh, baselines=baselines)
    text = evaluate.write_results(workdir, results, int(state["step"]), config.eval_split)
    if jax.process_index() == 0:
        print(text, flush=True)
    return results


def evaluate_workdir(config, workdir) -> dict:
    """--mode=eval: the latest checkpoint in `workdir`, with the baselines."""
    save_config(config, workdir, write=False)
    manager = checkpoint_manager(workdir, config)
    if manager.latest_step() is None:
        raise FileNotFoundError(
            f"No checkpoint in {os.path.join(workdir, 'checkpoints')}: train first (--mode=train)."
        )
    model = models.create_model(config)
    mesh = create_mesh()
    state = restore_or_init(model, config, mesh, manager, jax.random.key(config.seed))
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    return evaluate_and_report(model, state, builder, config, mesh, workdir)


def _check_and_log(writer, config, step, metrics, t0, t0_step):
    """Raises on a non-finite loss; on log steps writes the metrics and the throughput
    since (t0, t0_step). Returns the (time, step) the next throughput counts from."""
    loss = float(metrics["loss"])
    if not np.isfinite(loss):
        raise NonFiniteLossError(
            f"Loss became {loss} at step {step} (terms: "
            f"{ {k: float(v) for k, v in metrics.items()} }). The last good checkpoint is kept; "
            "lower config.learning_rate or check the input data."
        )
    if step % config.log_every_steps == 0:
        elapsed = time.perf_counter() - t0
        scalars = {f"train/{k}": float(v) for k, v in metrics.items()}
        if step > t0_step:
            scalars["train/samples_per_second"] = (step - t0_step) * config.batch_size / elapsed
        writer.write_scalars(step, scalars)
        return time.perf_counter(), step
    return t0, t0_step
