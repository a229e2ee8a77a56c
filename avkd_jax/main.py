"""Entry point: train, evaluate or summarise the AVC student.

python -m avkd_jax.main --config=configs/synthetic.py --workdir=runs/synthetic
python -m avkd_jax.main --config=configs/synthetic.py --workdir=runs/synthetic --mode=eval
python -m avkd_jax.main --config=configs/flickr10k.py --mode=summary
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from avkd_jax import models
from avkd_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and results go here.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "summary"],
    "train (resumes from the workdir's latest checkpoint, evaluates at the "
    "end), eval (the latest checkpoint), or summary (parameters and FLOPs).",
)
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if FLAGS.mode == "summary":
        print(models.summary(config))
        return
    if not FLAGS.workdir:
        raise app.UsageError(f"--workdir is required with --mode={FLAGS.mode}.")
    logging.info("JAX devices: %s (%d processes)", jax.devices(), jax.process_count())
    if FLAGS.mode == "train":
        train.train_and_evaluate(config, FLAGS.workdir)
    else:
        train.evaluate_workdir(config, FLAGS.workdir)


if __name__ == "__main__":
    jax.config.config_with_absl()
    app.run(main)
