"""Entry point: train, evaluate or summarise the AVC student.

python -m avkd_jax.main --config=configs/synthetic.py --workdir=runs/synthetic
python -m avkd_jax.main --config=configs/flickr10k.py --workdir=runs/f10k --mode=prepare
python -m avkd_jax.main --config=configs/synthetic.py --workdir=runs/synthetic --mode=eval
python -m avkd_jax.main --config=configs/flickr10k.py --mode=summary
python -m avkd_jax.main --config=configs/flickr144k.py --workdir=runs/authors --mode=import \
    --npz=avc.npz    # the authors' checkpoint, converted by `python -m teachers.convert_avc`

Several processes (one per host, docs/scaling_out.md): the same command on every host, with
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I (or the environment
variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); under `srun` or
`mpirun` with several tasks JAX finds them itself. After a preemption notice (SIGTERM)
training saves a checkpoint and exits with status 75; the same command resumes.
"""

import os
import sys

from avkd_jax import terminal

terminal.import_tensorflow_quietly()  # Before anything else imports it.

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from avkd_jax import models, preemption, prepare, runtime, state, train
from avkd_jax.errors import CheckpointRestoreError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and results go here.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "prepare", "eval", "summary", "import"],
    "train (resumes from the workdir's latest checkpoint, evaluates at the "
    "end), prepare (the dataset, evaluation sets, synthetic assets; the commands that "
    "extract missing teacher hints), eval (the latest checkpoint), summary (parameters and "
    "FLOPs), or import (--npz into a fresh workdir as its step-0 checkpoint).",
)
flags.DEFINE_string("npz", None, "--mode=import: the .npz written by teachers.convert_avc.")
flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "yes", "no"],
    "jax.distributed.initialize(): auto (when a flag below or its environment variable is "
    "set, or under srun / mpirun with several tasks), yes (always: JAX detects TPU pods, "
    "Kubernetes, ... itself), no (one process).",
)
flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 (default $JAX_COORDINATOR_ADDRESS)."
)
flags.DEFINE_integer("num_processes", None, "Processes in the run (default $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process, 0 … num_processes − 1 ($JAX_PROCESS_ID).")
flags.DEFINE_list(
    "local_device_ids", None, "This process's devices, e.g. 0,1 ($JAX_LOCAL_DEVICE_IDS)."
)
flags.DEFINE_enum(
    "log_level",
    "WARNING",
    ["DEBUG", "INFO", "WARNING", "ERROR"],
    "Other libraries' log messages show on the terminal from this level up (INFO: all of "
    "them); ours always show. <workdir>/log.txt keeps everything at INFO and up.",
)
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    # XLA reads its flags when JAX first touches a device, which nothing has done yet.
    runtime.add_xla_flags(config.get("xla_flags", ""))
    if FLAGS.mode == "summary":
        print(models.summary(config))
        return
    if not FLAGS.workdir and FLAGS.mode != "prepare":
        raise app.UsageError(f"--workdir is required with --mode={FLAGS.mode}.")
    kwargs = runtime.initialize_kwargs(FLAGS, os.environ)
    terminal.setup(FLAGS.log_level)
    if kwargs is not None:
        # Before anything touches a device: JAX then sees every process's devices.
        jax.distributed.initialize(**kwargs)
    terminal.attach_log_file(FLAGS.workdir, jax.process_index())
    logging.info(
        "JAX devices: %s (%d processes)",
        jax.devices(),
        jax.process_count(),
        extra=terminal.FILE_ONLY,
    )
    try:
        run_mode(config)
    except CheckpointRestoreError as e:
        sys.exit(f"error: {e}")


def run_mode(config):
    if FLAGS.mode == "prepare":
        prepare.main(config)
    elif FLAGS.mode == "train":
        try:
            train.train_and_evaluate(config, FLAGS.workdir)
        except preemption.Preempted as e:
            logging.warning("%s", e)
            sys.exit(preemption.PREEMPTED_EXIT_STATUS)
    elif FLAGS.mode == "import":
        if not FLAGS.npz:
            raise app.UsageError("--mode=import needs --npz (from python -m teachers.convert_avc).")
        print(f"Imported {FLAGS.npz}: {state.import_npz(config, FLAGS.workdir, FLAGS.npz)}")
    else:
        train.evaluate_workdir(config, FLAGS.workdir)


if __name__ == "__main__":
    jax.config.config_with_absl()
    app.run(main)
