"""The bad-input cases of configs and workdirs."""

import os

from absl import app, flags
from helpers.configs import load_config, tiny_config

from avkd_jax import (
    checkpoints,
    datasets,
    input_pipeline,
    runtime,
    teacher_hints,
)
from bad_inputs.cases import (
    SYNTHETIC_CONFIG,
    Case,
    distributed,
    parse_config,
    private_dataset,
    put,
    workdir_with_config,
)


def _config_file(ctx, text):
    return put(ctx.path("my_config.py"), text)


def _unknown_dataset(ctx):
    c = tiny_config(ctx.tmp)
    c.dataset = "audioset"
    return (lambda: datasets.get_builder(c)), "config.dataset 'audioset'"


def _paper_config_no_dirs(ctx):
    c = load_config("flickr10k")
    return (lambda: datasets.get_builder(c)), "config.data_dir and config.manual_dir"


def _paper_config_no_list(ctx):
    c = load_config("vggs10k")
    c.data_dir, c.manual_dir = ctx.path("tfds"), ctx.path("raw")
    return (lambda: datasets.get_builder(c)), "config.dataset_kwargs.train_list='vggss_10k.txt'"


def _unknown_eval_set(ctx):
    c = tiny_config(ctx.tmp)
    c.eval_sets = ("imagenet_test",)
    return (
        lambda: datasets.get_eval_sets(c, builder=object())
    ), "'imagenet_test' in config.eval_sets"


def _batch_not_divisible(ctx):
    config, builder, _, _ = private_dataset(ctx)
    config.input_groups = 3
    return (lambda: input_pipeline.steps_per_epoch(builder, config)), "config.input_groups=3"


def _too_many_groups(ctx):
    config, builder, _, _ = private_dataset(ctx)
    config.input_groups = 4
    return (lambda: input_pipeline.process_train_files(builder, config)), "config.input_groups=4"


def _another_model(ctx):
    workdir = workdir_with_config(ctx)
    c = tiny_config(ctx.tmp / "data")
    c.model.embed_dim = 32
    return (lambda: checkpoints.save_config(c, workdir)), f"{workdir} holds a run with model="


def _another_rate(ctx):
    workdir = workdir_with_config(ctx)
    c = tiny_config(ctx.tmp / "data")
    c.sample_rate = 16000
    return (lambda: checkpoints.save_config(c, workdir)), "sample_rate=16000"


def _corrupt_config_json(ctx):
    workdir = ctx.path("run")
    os.makedirs(workdir)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write('{"model": {"width": 0.125,')
    return (
        lambda: checkpoints.save_config(tiny_config(ctx.tmp), workdir)
    ), f"{path}: not valid JSON"


def _alpha_without_teachers(ctx):
    c = tiny_config(ctx.tmp)
    c.alpha_audio = 1000.0
    return (lambda: teacher_hints.ensure_hints(None, c, "train")), "config.teachers is empty"


CONFIG_CASES = [
    Case(
        "config-file-missing",
        "config",
        "--config names no file",
        OSError,
        lambda ctx: (
            lambda: parse_config([f"--config={ctx.tmp}/nothere.py"]).batch_size,
            f"{ctx.tmp}/nothere.py",
        ),
        "`Failed loading config file` with the path: fix the --config path.",
    ),
    Case(
        "config-syntax-error",
        "config",
        "the config file is not valid Python",
        SyntaxError,
        lambda ctx: (
            lambda: parse_config(["--config=" + _config_file(ctx, "def get_config(:\n")]),
            "my_config.py",
        ),
        "SyntaxError naming the file and line.",
    ),
    Case(
        "config-unknown-key",
        "config",
        "an override of a field the config does not have (`--config.nope=1`)",
        AttributeError,
        lambda ctx: (lambda: parse_config([SYNTHETIC_CONFIG, "--config.nope=1"]), "nope"),
        "AttributeError naming the key: configs are locked, so a typo never adds a field.",
    ),
    Case(
        "config-misspelt-nested-key",
        "config",
        "`--config.model.widht=0.5`",
        AttributeError,
        lambda ctx: (
            lambda: parse_config([SYNTHETIC_CONFIG, "--config.model.widht=0.5"]),
            'Did you mean "width"',
        ),
        "AttributeError with the nearest field name.",
    ),
    Case(
        "config-wrong-type",
        "config",
        "`--config.batch_size=abc`",
        flags.IllegalFlagValueError,
        lambda ctx: (
            lambda: parse_config([SYNTHETIC_CONFIG, "--config.batch_size=abc"]),
            "--config.batch_size=abc",
        ),
        "IllegalFlagValueError naming the flag and the type it wants.",
    ),
    Case(
        "config-unknown-dataset",
        "config",
        "`config.dataset` names no builder",
        ValueError,
        _unknown_dataset,
        "ValueError listing the datasets: synthetic_av, flickr_soundnet, vggsound.",
    ),
    Case(
        "config-no-data-dirs",
        "config",
        "a paper config without `data_dir` / `manual_dir`",
        ValueError,
        _paper_config_no_dirs,
        "Set --config.data_dir and --config.manual_dir (docs/data.md).",
    ),
    Case(
        "config-list-not-found",
        "config",
        "`dataset_kwargs.train_list` is in no metadata folder",
        FileNotFoundError,
        _paper_config_no_list,
        "FileNotFoundError naming the field and every folder looked in: put EZ-VSL's "
        "metadata there, set config.metadata_dir, or give a path.",
    ),
    Case(
        "config-unknown-eval-set",
        "config",
        "`config.eval_sets` names an unknown set",
        ValueError,
        _unknown_eval_set,
        "ValueError listing the known sets.",
    ),
    Case(
        "config-batch-vs-input-groups",
        "config",
        "`batch_size` not divisible by `input_groups`",
        ValueError,
        _batch_not_divisible,
        "Make input_groups divide batch_size.",
    ),
    Case(
        "config-more-groups-than-shards",
        "config",
        "`input_groups` larger than the number of train shards",
        ValueError,
        _too_many_groups,
        "Lower config.input_groups, or rebuild the dataset with more shards.",
    ),
    Case(
        "config-partial-distributed-flags",
        "config",
        "`--coordinator_address` without `--num_processes` / `--process_id`",
        app.UsageError,
        lambda ctx: (
            lambda: runtime.initialize_kwargs(distributed(coordinator_address="h:1"), {}),
            "--num_processes (or $JAX_NUM_PROCESSES)",
        ),
        "UsageError naming the missing flags: give all three, or run under srun / mpirun.",
    ),
    Case(
        "config-hint-weight-without-teachers",
        "config",
        "`alpha_audio` > 0 with `teachers=()`",
        ValueError,
        _alpha_without_teachers,
        "Name the teachers, or set alpha_audio / alpha_visual to 0.",
    ),
    Case(
        "workdir-of-another-model",
        "config",
        "a `--workdir` trained with another `config.model`",
        ValueError,
        _another_model,
        "ValueError naming the workdir and the differing field: use a fresh --workdir.",
    ),
    Case(
        "workdir-of-another-sample-rate",
        "config",
        "a `--workdir` trained at another `sample_rate` (wrong sample rate)",
        ValueError,
        _another_rate,
        "ValueError naming sample_rate: use a fresh --workdir.",
    ),
    Case(
        "workdir-config-json-corrupt",
        "config",
        "the workdir's `config.json` is not JSON",
        ValueError,
        _corrupt_config_json,
        "ValueError naming config.json: use a fresh --workdir.",
    ),
]
