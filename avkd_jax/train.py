"""Training: a plain-dict state, one jitted update step, the loop, checkpoints, evaluation."""

import contextlib
import functools
import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from clu import metric_writers

from avkd_jax import (
    datasets,
    evaluate,
    files,
    input_pipeline,
    losses,
    models,
    pictures,
    pretrained,
    sharding,
    teacher_hints,
)
from avkd_jax.datasets import overlap
from avkd_jax.errors import CheckpointRestoreError, NonFiniteLossError

# sysexits.h EX_TEMPFAIL: "try again later". `python -m avkd_jax.main` exits with it after
# a preemption checkpoint, so a scheduler or script tells "rerun me" from "done" (0).
PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
    """Training stopped at a preemption notice (SIGTERM) after saving a checkpoint.

    Attributes:
      step: the step of that checkpoint; running the same command again resumes there.
      directory: the checkpoint folder.
    """

    def __init__(self, step: int, directory: str):
        self.step, self.directory = step, str(directory)
        super().__init__(
            f"Preempted at step {step}: checkpoint saved in {self.directory}. Run the same "
            "command again to resume from it."
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
    """Adam with a unit step: `train_step` scales the update by `learning_rate(...)`, so
    the schedule lives outside the optimizer state and a checkpoint restores under either
    schedule."""
    del config
    return optax.adam(1.0)


def learning_rate(config, step, total_steps):
    """The step size at `step` (0-based): config.learning_rate, or for
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


def loss_terms(params, batch_stats, batch, *, model, config):
    """The total loss of DESIGN §3 over the global batch, and its terms.

    `batch` holds `image` uint8 [B, H, W, 3], `audio` int16 [B, N] and, when α2 / α3 are
    not 0, `audio_hint` [B, D] and `visual_hint` [B, h, w] (an attention-like map, NaN
    where the teacher found nothing) or [B, H/32, W/32, D] (a feature map).
    """
    (audio_emb, visual_map), new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats},
        batch["image"],
        batch["audio"],
        train=True,
        mutable=["batch_stats"],
    )
    sim = losses.similarity_maps(audio_emb, visual_map, config.tau)
    terms = {"loss_contrastive": losses.contrastive_loss(sim)}
    total = config.alpha_contrastive * terms["loss_contrastive"]
    if config.alpha_audio:
        terms["loss_audio_hint"] = losses.audio_hint_loss(audio_emb, batch["audio_hint"])
        total += config.alpha_audio * terms["loss_audio_hint"]
    if config.alpha_visual:
        hint = batch["visual_hint"]
        if hint.ndim == 3:
            terms["loss_visual_hint"] = losses.visual_hint_loss(visual_map, hint)
        else:
            terms["loss_visual_hint"] = losses.visual_feature_hint_loss(visual_map, hint)
        total += config.alpha_visual * terms["loss_visual_hint"]
    return total, ({"loss": total, **terms}, new_vars["batch_stats"])


def train_step(state, batch, *, model, config, total_steps=None):
    """One Adam step on the global batch. Returns the new state and scalar metrics.
    `total_steps`: the run's length, for config.lr_schedule = 'cosine'."""
    grad_fn = jax.value_and_grad(
        functools.partial(loss_terms, model=model, config=config), has_aux=True
    )
    (_, (metrics, batch_stats)), grads = grad_fn(state["params"], state["batch_stats"], batch)
    updates, opt_state = make_optimizer(config).update(grads, state["opt_state"], state["params"])
    lr = learning_rate(config, state["step"], total_steps)
    updates = jax.tree.map(lambda u: lr * u, updates)
    metrics["grad_norm"] = optax.global_norm(grads)
    metrics["learning_rate"] = lr
    new_state = {
        "params": optax.apply_updates(state["params"], updates),
        "batch_stats": batch_stats,
        "opt_state": opt_state,
        "step": state["step"] + 1,
    }
    return new_state, metrics


def compile_train_step(model, config, mesh, total_steps=None):
    """`train_step` jitted for the mesh: replicated state (donated), batch on `data`."""
    replicated = sharding.replicated(mesh)
    data = sharding.batch_sharded(mesh)
    return jax.jit(
        functools.partial(train_step, model=model, config=config, total_steps=total_steps),
        in_shardings=(replicated, data),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


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


def restore_or_init(model, config, mesh, manager, rng, init_visual_npz=None) -> dict:
    """The latest checkpoint in `manager` if there is one, else a fresh state, replicated
    (with the visual trunk from `init_visual_npz`, a converted ResNet18, when given)."""
    replicated = sharding.replicated(mesh)
    abstract = jax.eval_shape(functools.partial(init_state, model, config), rng)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
    )
    latest = manager.latest_step()
    if latest is not None:
        logging.info("Resuming from checkpoint step %d in %s", latest, manager.directory)
        try:
            return manager.restore(latest, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax and TensorStore raise bare Exceptions on damaged files.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointRestoreError(
                f"{os.path.join(manager.directory, str(latest))}: cannot restore this "
                f"checkpoint ({first[:300]}). Its files are damaged or belong to another "
                "model: move that step's folder away to resume from an earlier step, or use a "
                "fresh --workdir."
            ) from e
    state = jax.jit(functools.partial(init_state, model, config), out_shardings=replicated)(rng)
    if init_visual_npz:
        state = with_pretrained_visual_trunk(state, init_visual_npz, config, replicated)
    return state


def with_pretrained_visual_trunk(state, path, config, sharding) -> dict:
    """`state` with the visual student's ResNet18 trunk (parameters and BatchNorm statistics)
    taken from a converted `.npz` (DESIGN §3: ImageNet initialisation). Adam's moments start
    at zero whatever the parameters, so the optimiser state stays as it is."""
    trunk = pretrained.load_resnet18_npz(path, width=config.model.width)
    logging.info("Visual trunk initialised from %s", path)
    state = dict(state)
    for collection in ("params", "batch_stats"):
        tree = dict(state[collection])
        tree["visual"] = dict(tree["visual"])
        tree["visual"]["imgnet"] = jax.device_put(trunk[collection], sharding)
        state[collection] = tree
    return state


def save_config(config, workdir, write=True):
    """Writes config.json (what eval and localize rebuild the model from); refuses a
    workdir trained with a different model."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            try:
                old = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}: not valid JSON ({e}): not a workdir this code wrote; use a "
                    "fresh --workdir."
                ) from None
        for key in ("model", "image_size", "sample_rate", "audio_seconds"):
            new = json.loads(config.to_json())[key]
            if old.get(key) != new:
                raise ValueError(
                    f"{workdir} holds a run with {key}={old.get(key)}, but this config "
                    f"has {key}={new}: use a fresh --workdir."
                )
    if write and jax.process_index() == 0:
        # Written aside and renamed: the other processes read this file at their start,
        # and must never see it half written.
        files.write_text(path, config.to_json(indent=2))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the AVC student as `config` says, checkpointing and evaluating in `workdir`.

    Returns the last evaluation's results (eval set → variant → summary; {} when
    `config.eval_every_epochs` is 0). Raises `Preempted` after checkpointing on SIGTERM.
    """
    os.makedirs(workdir, exist_ok=True)
    save_config(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    mesh = sharding.create_mesh()
    if config.batch_size % jax.device_count():
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by the "
            f"{jax.device_count()} devices."
        )
    local_batch = config.batch_size // jax.process_count()
    logging.info(
        "Process %d of %d: %d local devices of %d; input groups %s of %d.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        list(input_pipeline.process_groups(input_pipeline.num_input_groups(config))),
        input_pipeline.num_input_groups(config),
    )

    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    eval_sets = datasets.prepare_eval_sets(config, builder)
    overlap.check_train_test_overlap(
        builder, config.train_split, eval_sets, config.allow_test_overlap
    )
    num_train = builder.info.splits[config.train_split].num_examples
    steps_per_epoch = input_pipeline.steps_per_epoch(builder, config)
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train} training examples make no batch of {config.batch_size}.")
    total_steps = steps_per_epoch * config.num_epochs
    learning_rate(config, 0, total_steps)  # A bad config.lr_schedule fails before the work.
    teacher_hints.ensure_hints(builder, config, config.train_split)
    hint_sources = teacher_hints.hint_sources(builder, config, config.train_split)
    teacher_hints.check_counts(builder, config.train_split, hint_sources)
    for source in hint_sources:
        logging.info("Hints %s from teacher %s (%s)", source.names, source.teacher, source.spec)

    model = models.create_model(config)
    manager = checkpoint_manager(workdir, config)
    init_npz = pretrained.resolve_npz(config.init_visual_npz, builder, config)
    if not init_npz:
        logging.warning(
            "The visual student starts from random weights; the paper's starts from "
            "ImageNet (convert torchvision's with teachers.convert_resnet and pass "
            "--config.init_visual_npz)."
        )
    state = restore_or_init(model, config, mesh, manager, jax.random.key(config.seed), init_npz)
    step = int(state["step"])
    step_fn = compile_train_step(model, config, mesh, total_steps)
    data_sharding = sharding.batch_sharded(mesh)
    logging.info(
        "%d train examples, %d steps per epoch, %d steps; starting at %d",
        num_train,
        steps_per_epoch,
        total_steps,
        step,
    )

    read_files = input_pipeline.process_train_files(builder, config, hint_sources)
    results = {}
    pending, t0, t0_step = None, time.perf_counter(), step
    with sigterm_notice() as sigterm_received:
        for epoch in range(step // steps_per_epoch, config.num_epochs):
            ds = input_pipeline.train_dataset(builder, config, epoch, local_batch, hint_sources)
            ds = ds.skip(step - epoch * steps_per_epoch).take(steps_per_epoch)
            batches = input_pipeline.prefetch_to_device(
                input_pipeline.numpy_batches(ds, read_files),
                config.prefetch_batches,
                data_sharding,
            )
            for batch in batches:
                state, metrics = step_fn(state, batch)
                step += 1
                # Read the previous step's metrics while this one runs: a NaN stops training
                # one step late at most, and the device never waits for the host.
                if pending is not None:
                    t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
                pending = (step, metrics)
                # Every process asks at every step: with several, JAX's preemption service
                # makes them agree on the step to stop at.
                preempted = manager.reached_preemption(step) or sigterm_received()
                if preempted or step % config.checkpoint_every_steps == 0 or step == total_steps:
                    t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
                    pending = None
                    manager.save(step, args=ocp.args.StandardSave(state))
                    writer.flush()  # The metrics up to a checkpoint outlive a kill -9.
                    logging.info("Saved checkpoint step %d in %s", step, manager.directory)
                if preempted:
                    manager.wait_until_finished()
                    raise Preempted(step, manager.directory)
            if step < (epoch + 1) * steps_per_epoch:  # A shard emptied or cut between records.
                input_pipeline.raise_short_shard(
                    builder,
                    config.train_split,
                    read_files,
                    f"Epoch {epoch} ended after step {step}, not {(epoch + 1) * steps_per_epoch}",
                )
            every = config.eval_every_epochs
            if every and ((epoch + 1) % every == 0 or epoch + 1 == config.num_epochs):
                if pending is not None:
                    t0, t0_step = _check_and_log(writer, config, *pending, t0, t0_step)
                    pending = None
                final = epoch + 1 == config.num_epochs
                results = evaluate_and_report(
                    model, state, eval_sets, config, mesh, workdir, baselines=final
                )
                writer.write_scalars(
                    step,
                    {
                        f"eval/{name}/{k}": v
                        for name, r in results.items()
                        for k, v in r["AVC"].items()
                        if np.isscalar(v)
                    },
                )
                writer.flush()
    if not results and config.eval_every_epochs:  # Already trained: report it again.
        logging.info("%s is already trained to step %d: evaluating it.", workdir, step)
        results = evaluate_and_report(model, state, eval_sets, config, mesh, workdir)
    manager.wait_until_finished()
    writer.flush()
    return results


@contextlib.contextmanager
def sigterm_notice():
    """Yields a function that says whether SIGTERM has arrived since entering.

    One process without `jax.distributed`: a handler notes the signal and training goes on
    to the end of its step, saves and stops (`Preempted`). With `jax.distributed`, JAX's
    preemption service owns SIGTERM and the processes agree on the step to stop at
    (`CheckpointManager.reached_preemption`); the function then always says False.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if jax.distributed.is_initialized() or not in_main_thread:
        yield lambda: False
        return
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)


def variables_of(state) -> dict:
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


def evaluate_and_report(model, state, eval_sets, config, mesh, workdir, baselines=True):
    """Evaluates the trained student and its object-guided variants on every set of
    `eval_sets` (name → `datasets.EvalSet`; with `baselines`: beside an untrained student,
    the centre prior and the every-object map), writes results.{json,md}, cious.json and
    the pictures (<workdir>/pictures/), prints the tables. Returns set → variant → summary
    (and 'skipped' → {variant: reason} where a variant lacked its inputs)."""
    variants = {"AVC": variables_of(state)}
    if baselines:
        replicated = sharding.replicated(mesh)
        variants["untrained"] = jax.jit(
            functools.partial(models.init_variables, model, config), out_shardings=replicated
        )(jax.random.key(config.seed + 1))
    evaluated = evaluate.evaluate_sets(model, variants, eval_sets, config, mesh, baselines)
    results = {name: e.results for name, e in evaluated.items()}
    step = int(state["step"])
    text = evaluate.write_results(workdir, results, step)
    evaluate.write_cious(workdir, evaluated, step)
    if jax.process_index() == 0:
        for name, e in evaluated.items():
            pictures.write_pictures(os.path.join(workdir, "pictures"), name, e)
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
    mesh = sharding.create_mesh()
    state = restore_or_init(model, config, mesh, manager, jax.random.key(config.seed))
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    eval_sets = datasets.prepare_eval_sets(config, builder)
    return evaluate_and_report(model, state, eval_sets, config, mesh, workdir)


def import_npz(config, workdir, npz) -> str:
    """--mode=import: a whole student from an `.npz` (`python -m teachers.convert_avc`, the
    authors' released checkpoint) → `workdir` with config.json and a checkpoint at step 0,
    which --mode=eval and `avkd_jax.localize` read. Returns the checkpoint folder."""
    os.makedirs(workdir, exist_ok=True)
    manager = checkpoint_manager(workdir, config)
    if manager.latest_step() is not None:
        raise FileExistsError(
            f"{manager.directory} already holds a checkpoint (step {manager.latest_step()}): "
            "import into a fresh --workdir."
        )
    if config.model.dtype != "float32":
        # The authors' weights are evaluated in their arithmetic, whatever the config
        # trains in: --mode=eval and localize read the dtype from this run's config.json.
        logging.info("Importing into float32 (the config says %s)", config.model.dtype)
        config = config.copy_and_resolve_references()
        config.model.dtype = "float32"
    model = models.create_model(config)
    variables = pretrained.load_avc_npz(npz, model, config)
    save_config(config, workdir)
    replicated = sharding.replicated(sharding.create_mesh())
    params = jax.device_put(variables["params"], replicated)
    state = {
        "params": params,
        "batch_stats": jax.device_put(variables["batch_stats"], replicated),
        # Adam's moments start at zero: a later --mode=train fine-tunes from here.
        "opt_state": jax.device_put(make_optimizer(config).init(params), replicated),
        "step": jax.device_put(jnp.zeros([], jnp.int32), replicated),
    }
    manager.save(0, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    logging.info("Imported %s into %s (step 0)", npz, manager.directory)
    return str(manager.directory)


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
