"""The bad-input cases of prepared TFRecord shards."""

import os

from avkd_jax import (
    input_pipeline,
)
from bad_inputs.cases import (
    Case,
    cut,
    cut_at_record,
    private_dataset,
    put,
    read_test,
    read_train,
    write_flipped,
)


def _shard(ctx, damage, split="train"):
    config, builder, train_file, test_file = private_dataset(ctx)
    path = train_file if split == "train" else test_file
    damage(path)
    read = read_train if split == "train" else read_test
    return read(config, builder), path


TFRECORD_CASES = [
    Case(
        "tfrecord-truncated",
        "tfrecord",
        "a train shard cut inside a record",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut(p, fraction=0.7)),
        "`<shard>: unreadable TFRecord (...)`: delete that dataset's folder and run again.",
    ),
    Case(
        "tfrecord-corrupt-byte",
        "tfrecord",
        "one byte of a train shard flipped",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, write_flipped),
        "`<shard>: unreadable TFRecord (corrupted record at N)`: rebuild.",
    ),
    Case(
        "tfrecord-not-a-tfrecord",
        "tfrecord",
        "a train shard overwritten with other bytes",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: put(p, b"not a tfrecord" * 50)),
        "`<shard>: unreadable TFRecord (... Is this even a TFRecord file?)`.",
    ),
    Case(
        "tfrecord-missing",
        "tfrecord",
        "a train shard deleted",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, os.remove),
        "`<shard>: unreadable TFRecord (... No such file ...)`.",
    ),
    Case(
        "tfrecord-test-truncated",
        "tfrecord",
        "a test shard cut inside a record",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut(p, fraction=0.7), "test"),
        "`<shard>: unreadable TFRecord (...)` at evaluation.",
    ),
    Case(
        "tfrecord-emptied",
        "tfrecord",
        "a test shard emptied to 0 bytes (TF reads it as no records)",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: put(p, b""), "test"),
        "`<shard>: 0 records, the dataset's metadata says N`: rebuild.",
    ),
    Case(
        "tfrecord-cut-between-records",
        "tfrecord",
        "a test shard cut cleanly after 7 of its records",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut_at_record(p, 7), "test"),
        "`<shard>: 7 records, the dataset's metadata says 12`: rebuild.",
    ),
]
