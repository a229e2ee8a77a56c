"""The bad-input cases of teacher hint shards and their specs."""

import json
import os

import tensorflow as tf

from avkd_jax import (
    teacher_hints,
)
from avkd_jax.datasets import (
    hint_shards,
)
from bad_inputs.cases import (
    Case,
    cut,
    hints_as_float32,
    misshapen_hints,
    nan_hint,
    train_with_hints,
    with_hints,
)


def _hints(ctx, mutate=None, spec_edit=None, call=train_with_hints, names="hint"):
    config, builder, hint_file, spec_file = with_hints(ctx, mutate, spec_edit)
    target = {"hint": hint_file, "spec": spec_file}[names]
    return call(config, builder), target


def _hint_missing(ctx):
    config, builder, hint_file, _ = with_hints(ctx)
    os.remove(hint_file)
    return train_with_hints(config, builder), f"{hint_file}: hint shard is missing"


def _hint_spec_missing(ctx):
    config, builder, _, spec_file = with_hints(ctx)
    os.remove(spec_file)
    return train_with_hints(config, builder), f"{spec_file}: no hint spec"


def _hint_spec_other_count(ctx):
    config, builder, _, spec_file = with_hints(ctx, spec_edit=_set(num_examples=40))
    config.teachers = ("fake",)
    return (
        lambda: teacher_hints.ensure_hints(builder, config, "train"),
        f"{spec_file} covers 40 examples, the split has 48",
    )


def _set(**fields):
    return lambda spec: json.dumps({**spec, **fields})


def _hint_cut(ctx):
    config, builder, hint_file, _ = with_hints(ctx)
    cut(hint_file, keep=os.path.getsize(hint_file) - 7)
    return train_with_hints(config, builder), f"{hint_file}: truncated or corrupt"


def _hint_missing_name(ctx):
    config, builder, _, _ = with_hints(ctx, spec_edit=_set(shapes={"visual_hint": [5, 5]}))
    return train_with_hints(config, builder), "config.teachers=('fake',) provides ['audio_hint']"


HINT_CASES = [
    Case(
        "hints-shard-missing",
        "hints",
        "one hint shard deleted",
        hint_shards.HintError,
        _hint_missing,
        "`<hint shard>: hint shard is missing`: re-run teachers.extract (finished shards are kept).",
    ),
    Case(
        "hints-record-short",
        "hints",
        "a hint shard one record short",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, mutate=lambda r: r[:-1]),
        "`<hint shard>: 47 records, its data shard has 48`: re-extract.",
    ),
    Case(
        "hints-cut",
        "hints",
        "a hint shard cut inside its last record",
        hint_shards.HintError,
        _hint_cut,
        "`<hint shard>: truncated or corrupt TFRecord file`: re-extract.",
    ),
    Case(
        "hints-misaligned",
        "hints",
        "a hint shard whose records are in another order than its data shard's",
        tf.errors.InvalidArgumentError,
        lambda ctx: _hints(ctx, mutate=lambda r: [r[1], r[0]] + r[2:]),
        "`Hint shard <file> is not aligned with data shard <file>`: re-extract.",
    ),
    Case(
        "hints-wrong-shape",
        "hints",
        "hint tensors of another shape than the spec's (6×6 maps, spec 5×5)",
        tf.errors.InvalidArgumentError,
        misshapen_hints,
        "`<hint shard>: visual_hint does not hold the (5, 5) float16 values its spec says`.",
    ),
    Case(
        "hints-wrong-dtype",
        "hints",
        "hint tensors stored as float32, not float16",
        tf.errors.InvalidArgumentError,
        hints_as_float32,
        "`<hint shard>: audio_hint does not hold the (16,) float16 values ...`: re-extract.",
    ),
    Case(
        "hints-nan",
        "hints",
        "an audio hint of NaN (checked by `teachers.extract --verify`)",
        hint_shards.HintError,
        nan_hint,
        "`<hint shard>: record 3 (id ...): audio_hint has NaN or inf`.",
    ),
    Case(
        "hints-spec-missing",
        "hints",
        "the split's spec file deleted",
        hint_shards.HintError,
        _hint_spec_missing,
        "`<spec>: no hint spec (hints not extracted for this split?)`.",
    ),
    Case(
        "hints-spec-not-json",
        "hints",
        "the spec file is not JSON",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit="{not json", names="spec"),
        "`<spec>: not a valid hint spec (...)`.",
    ),
    Case(
        "hints-spec-version",
        "hints",
        "a spec of another format version",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit=_set(version=99), names="spec"),
        "`<spec>: hint spec version is not 1`: re-extract with this code.",
    ),
    Case(
        "hints-spec-unknown-name",
        "hints",
        "a spec naming an unknown hint tensor",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit=_set(shapes={"text_hint": [3]}), names="spec"),
        "`<spec>: not a valid hint spec (teacher 'fake': unknown hint names ...)`.",
    ),
    Case(
        "hints-spec-other-count",
        "hints",
        "a spec covering 40 examples of a 48-example split (stale hints)",
        FileNotFoundError,
        _hint_spec_other_count,
        "The exact teachers.extract command to run, with why: `<spec> covers 40 examples ...`.",
    ),
    Case(
        "hints-lack-needed-tensor",
        "hints",
        "`alpha_audio` > 0 but no teacher's hints hold `audio_hint`",
        ValueError,
        _hint_missing_name,
        "Add a teacher that provides it to config.teachers, or set alpha_audio=0.",
    ),
]
