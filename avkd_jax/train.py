"""Training: the loss terms, one jitted update step, and the loop.

The state and its optimizer are `state`'s, checkpoints and config.json `checkpoints`',
the dataset and its assets `prepare`'s and `synthetic_assets`', preemption `preemption`'s.
"""

import dataclasses
import functools
import os
import sys
import time

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from clu import metric_writers, periodic_actions
from tqdm import tqdm

from avkd_jax import (
    checkpoints,
    datasets,
    input_pipeline,
    losses,
    models,
    prepare,
    pretrained,
    sharding,
    synthetic_assets,
    teacher_hints,
    terminal,
)
from avkd_jax.checkpoints import checkpoint_manager, save_config
from avkd_jax.errors import NonFiniteLossError
from avkd_jax.eval import evaluator, reports
from avkd_jax.preemption import Preempted, sigterm_notice
from avkd_jax.state import learning_rate, make_optimizer, restore_or_init


def loss_terms(params, batch_stats, batch, *, model, config):
    """The total loss (docs/design.md, Model and losses) over the global batch, and its terms.

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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the AVC student as `config` says, checkpointing and evaluating in `workdir`.

    Returns the last evaluation's results (eval set → variant → summary; {} when
    `config.eval_every_epochs` is 0). Raises `preemption.Preempted` after checkpointing on
    SIGTERM, `NonFiniteLossError` (one step late) on a NaN or infinite loss.
    """
    os.makedirs(workdir, exist_ok=True)
    save_config(config, workdir)
    mesh = _mesh(config)
    builder, eval_sets = prepare.prepare_data(config)
    steps_per_epoch, total_steps = _schedule(builder, config)
    hint_sources = _hint_sources(builder, config)
    model = models.create_model(config)
    init_npz = _init_visual_npz(builder, config)
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    results = {}
    with checkpoints.open_manager(workdir, config) as manager, sigterm_notice() as sigterm:
        rng = jax.random.key(config.seed)
        state = restore_or_init(model, config, mesh, manager, rng, init_npz, resume=True)
        step = int(state["step"])
        logging.info(
            "Training on %s: %d examples, %d steps per epoch, %d steps%s.",
            _devices_text(),
            builder.info.splits[config.train_split].num_examples,
            steps_per_epoch,
            total_steps,
            f", resuming at step {step}" if step else "",
        )
        progress = terminal.TrainProgress(total_steps, step, config.batch_size, jax.process_index())
        epochs = _Epochs(
            config,
            builder,
            hint_sources,
            input_pipeline.process_train_files(builder, config, hint_sources),
            steps_per_epoch,
            compile_train_step(model, config, mesh, total_steps),
            sharding.batch_sharded(mesh),
            manager,
            _TrainMetrics(writer, config, step, progress),
            sigterm,
            total_steps,
        )
        for epoch in range(step // steps_per_epoch, config.num_epochs):
            state, step = epochs.run(epoch, state, step)
            every = config.eval_every_epochs
            if every and ((epoch + 1) % every == 0 or epoch + 1 == config.num_epochs):
                epochs.metrics.flush()
                final = epoch + 1 == config.num_epochs
                if final:
                    progress.close()
                results = evaluate_and_report(
                    model, state, eval_sets, config, mesh, workdir, baselines=final
                )
                _write_eval_scalars(writer, step, results)
        epochs.metrics.flush()
        progress.close()
        if not results and config.eval_every_epochs:  # Already trained: report it again.
            logging.info("%s is already trained to step %d: evaluating it.", workdir, step)
            results = evaluate_and_report(model, state, eval_sets, config, mesh, workdir)
    writer.flush()
    if jax.process_index() == 0:
        log_file = terminal.log_path(workdir)
        if results:
            logging.info("%s", reports.files_note(workdir, log_file))
        else:
            logging.info("Checkpoints in %s, log %s.", manager.directory, log_file)
    return results


def _devices_text() -> str:
    n, kind = jax.device_count(), jax.devices()[0].platform.upper()
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    return f"{n} {kind} device{'s' if n > 1 else ''}{processes}"


def _mesh(config) -> jax.sharding.Mesh:
    """The mesh of every device; refuses a batch it cannot split evenly."""
    if config.batch_size % jax.device_count():
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by the "
            f"{jax.device_count()} devices."
        )
    groups = input_pipeline.num_input_groups(config)
    logging.info(
        "Process %d of %d: %d local devices of %d; input groups %s of %d.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        list(input_pipeline.process_groups(groups)),
        groups,
        extra=terminal.FILE_ONLY if jax.process_count() == 1 else None,
    )
    return sharding.create_mesh()


def _schedule(builder, config) -> tuple[int, int]:
    """(steps per epoch, total steps); refuses a split smaller than one batch and a bad
    config.lr_schedule before any work."""
    steps_per_epoch = input_pipeline.steps_per_epoch(builder, config)
    if steps_per_epoch == 0:
        num_train = builder.info.splits[config.train_split].num_examples
        raise ValueError(f"{num_train} training examples make no batch of {config.batch_size}.")
    total_steps = steps_per_epoch * config.num_epochs
    learning_rate(config, 0, total_steps)
    return steps_per_epoch, total_steps


def _hint_sources(builder, config) -> list:
    """The train split's hint sources, made (synthetic teachers) and checked complete."""
    synthetic_assets.make(builder, config)
    teacher_hints.ensure_hints(builder, config, config.train_split)
    sources = teacher_hints.hint_sources(builder, config, config.train_split)
    teacher_hints.check_counts(builder, config.train_split, sources)
    for source in sources:
        logging.info(
            "Hints %s from teacher %s (%s)",
            source.names,
            source.teacher,
            source.spec,
            extra=terminal.FILE_ONLY,
        )
    return sources


def _init_visual_npz(builder, config) -> str | None:
    """config.init_visual_npz as a path (None: random weights, with a warning)."""
    path = pretrained.resolve_npz(config.init_visual_npz, builder, config)
    if not path:
        logging.warning(
            "The visual student starts from random weights; the paper's starts from "
            "ImageNet (convert torchvision's with teachers.convert_resnet and pass "
            "--config.init_visual_npz)."
        )
    return path


def _write_eval_scalars(writer, step, results) -> None:
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


class _TrainMetrics:
    """Each step's metrics: the loss checked one step late (read while the next step runs,
    so the device never waits for the host) and shown by `progress`, written every
    config.log_every_steps."""

    def __init__(self, writer, config, step: int, progress: terminal.TrainProgress):
        self.writer, self.batch_size, self.progress = writer, config.batch_size, progress
        self._pending = None
        self._since = (step, time.monotonic())  # Where the next throughput counts from.
        self._log = periodic_actions.PeriodicCallback(
            every_steps=config.log_every_steps, callback_fn=self._write
        )

    def push(self, step: int, metrics: dict) -> None:
        """Checks the previous step's metrics, then holds `metrics` (of `step`)."""
        self.flush()
        self._pending = (step, metrics)

    def flush(self) -> None:
        """Checks and logs the held metrics, if any. Raises NonFiniteLossError."""
        if self._pending is None:
            return
        (step, metrics), self._pending = self._pending, None
        loss = float(metrics["loss"])
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"Loss became {loss} at step {step} (terms: "
                f"{ {k: float(v) for k, v in metrics.items()} }). The last good checkpoint is "
                "kept; lower config.learning_rate or check the input data."
            )
        self.progress.update(step, loss)
        self._log(step, metrics=metrics)

    def _write(self, step, t, metrics):
        scalars = {f"train/{k}": float(v) for k, v in metrics.items()}
        since_step, since_t = self._since
        if step > since_step:
            scalars["train/samples_per_second"] = (
                (step - since_step) * self.batch_size / (t - since_t)
            )
        self.writer.write_scalars(step, scalars)
        self._since = (step, t)


@dataclasses.dataclass
class _Epochs:
    """What every epoch of one run shares; `run` trains one."""

    config: ml_collections.ConfigDict
    builder: object
    hint_sources: list
    read_files: list
    steps_per_epoch: int
    step_fn: object
    data_sharding: jax.sharding.Sharding
    manager: ocp.CheckpointManager
    metrics: _TrainMetrics
    sigterm_received: object
    total_steps: int

    def __post_init__(self):
        self.checkpoint = periodic_actions.PeriodicCallback(
            every_steps=self.config.checkpoint_every_steps,
            on_steps=[self.total_steps],
            callback_fn=self._save,
        )

    def run(self, epoch: int, state: dict, step: int) -> tuple[dict, int]:
        """Trains epoch `epoch` from `step` (resumed mid-epoch: the steps taken skipped).
        Returns the state and step after it. Raises `Preempted` after saving."""
        c, first = self.config, epoch * self.steps_per_epoch
        ds = input_pipeline.train_dataset(
            self.builder, c, epoch, c.batch_size // jax.process_count(), self.hint_sources
        )
        ds = ds.skip(step - first).take(self.steps_per_epoch)
        batches = input_pipeline.prefetch_to_device(
            input_pipeline.numpy_batches(ds, self.read_files),
            c.prefetch_batches,
            self.data_sharding,
        )
        for batch in batches:
            state, metrics = self.step_fn(state, batch)
            step += 1
            self.metrics.push(step, metrics)
            # Every process asks at every step: with several, JAX's preemption service
            # makes them agree on the step to stop at.
            preempted = self.manager.reached_preemption(step) or self.sigterm_received()
            if not self.checkpoint(step, state=state) and preempted:
                self._save(step, time.monotonic(), state)
            if preempted:
                raise Preempted(step, self.manager.directory)
        if step < first + self.steps_per_epoch:  # A shard emptied or cut between records.
            input_pipeline.raise_short_shard(
                self.builder,
                c.train_split,
                self.read_files,
                f"Epoch {epoch} ended after step {step}, not {first + self.steps_per_epoch}",
            )
        return state, step

    def _save(self, step, t, state):
        """Checkpoints `state` at `step`, its metrics checked and written first."""
        del t
        self.metrics.flush()
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.metrics.writer.flush()  # The metrics up to a checkpoint outlive a kill -9.
        logging.info("Saved checkpoint step %d in %s", step, self.manager.directory)


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
    evaluated = evaluator.evaluate_sets(model, variants, eval_sets, config, mesh, baselines)
    results, text = reports.write_all(workdir, evaluated, int(state["step"]))
    if jax.process_index() == 0:
        tqdm.write(text, file=sys.stdout)  # Above a progress bar, should one be drawn.
        sys.stdout.flush()
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
