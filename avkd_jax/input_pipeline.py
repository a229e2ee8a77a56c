"""tf.data over the TFDS shards, per process, to global `jax.Array`s.

Images leave the host as uint8 and audio as int16 PCM: normalisation and the
log-spectrogram happen on the device, inside the model (`models.AVC`), which keeps
host-to-device traffic 4× smaller than float32 and the host CPU free for decoding.

Training order is a pure function of (seed, epoch): files are read in a fixed order, the
shuffle and every augmentation are seeded from (seed, epoch, position), so a run resumed
from step s reproduces exactly the batches an uninterrupted run would have seen.

Several processes (docs/scaling_out.md, Input groups): the train shards are dealt to `config.input_groups` groups
(default: one per process), each group a seeded stream of `batch_size / groups` examples
per step; the global batch is the groups' batches side by side, in group order, and each
process reads a contiguous block of groups. The global batches therefore depend on
(seed, epoch, input_groups) only, not on how many processes read them.
"""

import collections
import itertools
import os
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from avkd_jax.datasets import hint_shards
from avkd_jax.errors import ShardError
from avkd_jax.files import count_records

# tf.data must not grab a GPU that JAX wants; on CPU this is a no-op.
tf.config.set_visible_devices([], "GPU")


def split_files(builder, split: str) -> list[str]:
    """The TFRecord shard paths of a prepared split, in shard order."""
    info = builder.info.splits[split]
    return [os.path.join(builder.data_dir, f) for f in info.filenames]


def num_input_groups(config) -> int:
    """`config.input_groups`, or one group per process when it is unset (None or 0)."""
    return config.get("input_groups") or jax.process_count()


def group_files(files: list[str], groups: int) -> list[list[str]]:
    """The shard files of each input group: file k goes to group k mod `groups`."""
    if len(files) < groups:
        raise ValueError(
            f"{len(files)} train shard files cannot feed config.input_groups={groups} input "
            "groups (one per process by default): rebuild the dataset with more shards or "
            "lower config.input_groups."
        )
    return [files[g::groups] for g in range(groups)]


def process_groups(groups: int) -> range:
    """The input groups this process reads: a contiguous block, so that its rows of the
    global batch (this process's devices, in mesh order) hold those groups in order."""
    count, index = jax.process_count(), jax.process_index()
    if groups % count:
        raise ValueError(
            f"config.input_groups={groups} input groups cannot be shared evenly by "
            f"{count} processes: make it a multiple of the process count."
        )
    per_process = groups // count
    return range(index * per_process, (index + 1) * per_process)


def process_train_files(builder, config, hint_sources=()) -> list[str]:
    """Every file this process's training reads: its groups' data shards and their hints."""
    groups = num_input_groups(config)
    files = group_files(split_files(builder, config.train_split), groups)
    data = [f for g in process_groups(groups) for f in files[g]]
    return data + [source.file_for(f) for source in hint_sources for f in data]


def first_unreadable(files: list[str]) -> tuple[str, str] | None:
    """(path, TF's reason) of the first of `files` that cannot be read to its end."""
    for path in files:
        try:
            count_records(path)
        except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
            return path, e.message.split("}}")[-1].split(" [Op:")[0].strip()
    return None


def numpy_batches(ds: tf.data.Dataset, files: list[str]) -> Iterator[dict]:
    """`ds.as_numpy_iterator()`, where a missing, truncated or corrupt TFRecord among
    `files` (which TF reports without its name) raises `ShardError` naming it."""
    try:
        yield from ds.as_numpy_iterator()
    except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
        path, reason = first_unreadable(files) or (", ".join(files), e.message)
        raise ShardError(
            f"{path}: unreadable TFRecord ({reason}). The prepared data is damaged: delete "
            "that dataset's folder (or re-run the hint extraction for a .hints-* file) and "
            "run again."
        ) from None


def raise_short_shard(builder, split: str, files: list[str], what: str) -> None:
    """Raises ShardError naming the first data shard of `split` among `files` that holds
    fewer (or more) records than the dataset's metadata says: a shard cut at a record
    boundary, or emptied, reads without any TF error. Reads the files whole, so it is
    called only once `what` (a split that came up short) has happened."""
    lengths = dict(zip(split_files(builder, split), builder.info.splits[split].shard_lengths))
    for path in files:
        if path not in lengths:
            continue  # A hint shard: `teacher_hints.check_counts` compared them at the start.
        try:
            count = count_records(path)
        except (tf.errors.DataLossError, tf.errors.NotFoundError):
            count = None
        if count != lengths[path]:
            raise ShardError(
                f"{path}: {'unreadable' if count is None else count} records, the dataset's "
                f"metadata says {lengths[path]}: the file is truncated or was replaced. The "
                "prepared data is damaged: delete that dataset's folder and run again."
            )
    raise ShardError(f"{what}; its shards {', '.join(files)} hold the records their metadata says")


def steps_per_epoch(builder, config) -> int:
    """Full global batches per epoch: the fewest that any input group can fill (the same
    number in every process, which the collectives of each step need)."""
    groups = num_input_groups(config)
    if config.batch_size % groups:
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by "
            f"config.input_groups={groups} (one per process by default)."
        )
    info = builder.info.splits[config.train_split]
    lengths = dict(zip(split_files(builder, config.train_split), info.shard_lengths))
    group_batch = config.batch_size // groups
    return min(
        sum(lengths[f] for f in files) // group_batch
        for files in group_files(list(lengths), groups)
    )


def _decode(builder):
    features = builder.info.features

    # Plain TF ops: AutoGraph has nothing to convert (and cannot parse lambdas anyway).
    @tf.autograph.experimental.do_not_convert
    def decode(record):
        return features.deserialize_example(record)

    return decode


def _resize_bicubic(image, size):
    """Bicubic, antialiased, back to uint8: what torchvision's Resize does on PIL images."""
    image = tf.image.resize(image, size, method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _train_preprocess(example, index, seed, epoch, image_size, resize_size):
    """Resize the shorter side to `resize_size`, random crop `image_size`, random h-flip."""
    image = example["image"]
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_size / tf.reduce_min(shape)
    new_hw = tf.cast(tf.round(shape * scale), tf.int32)
    new_hw = tf.maximum(new_hw, resize_size)  # Guard the shorter side against rounding.
    image = _resize_bicubic(image, new_hw)
    crop_seed = tf.stack([tf.cast(seed * 100_003 + epoch, tf.int64), index])
    flip_seed = tf.stack([tf.cast(seed * 100_003 + epoch, tf.int64), index + (1 << 40)])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], crop_seed)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return {"image": image, "audio": example["audio"]}


_ID_FEATURE = {"id": tf.io.FixedLenFeature([], tf.string)}


def records_with_hints(files: list[str], hint_sources) -> tf.data.Dataset:
    """The records of `files`, in order, each zipped with its hints.

    Args:
      files: data shard paths.
      hint_sources: `teacher_hints.HintSource`s, one per teacher read.
    Returns:
      a dataset of `(record, hints)`: the serialized data record and a dict of the
      sources' hint tensors (float16). The ids of every record and its hints are compared
      as they are read: a mismatch stops with an error naming both shards and the ids.
    """
    if not hint_sources:
        return tf.data.TFRecordDataset(files).map(_without_hints)
    per_file = []
    for data_file in files:
        hint_files = [source.file_for(data_file) for source in hint_sources]
        parts = [tf.data.TFRecordDataset(data_file)] + [
            tf.data.TFRecordDataset(h).map(_hint_parser(source, h))
            for h, source in zip(hint_files, hint_sources)
        ]
        per_file.append(
            tf.data.Dataset.zip(tuple(parts)).map(_merge_checked(data_file, hint_files))
        )
    ds = per_file[0]
    for d in per_file[1:]:
        ds = ds.concatenate(d)
    return ds


@tf.autograph.experimental.do_not_convert
def _without_hints(record):
    return record, {}


def _hint_parser(source, path):
    parse = hint_shards.tf_parser(source.spec, path)

    @tf.autograph.experimental.do_not_convert
    def parse_needed(record):
        ex = parse(record)
        return {"id": ex["id"], **{n: ex[n] for n in source.names}}

    return parse_needed


def _merge_checked(data_file, hint_files):
    @tf.autograph.experimental.do_not_convert
    def merge(record, *hints):
        data_id = tf.io.parse_single_example(record, _ID_FEATURE)["id"]
        merged = {}
        with tf.control_dependencies(
            [
                tf.debugging.assert_equal(
                    h["id"],
                    data_id,
                    message=f"Hint shard {f} is not aligned with data shard {data_file} "
                    "(ids differ; re-extract the hints)",
                )
                for h, f in zip(hints, hint_files)
            ]
        ):
            for h in hints:
                merged.update({k: tf.identity(v) for k, v in h.items() if k != "id"})
            return tf.identity(record), merged

    return merge


def train_dataset(
    builder, config, epoch: int, local_batch_size: int, hint_sources=()
) -> tf.data.Dataset:
    """One epoch of this process's training batches (uint8 images, int16 PCM, float16 hints).

    Args:
      local_batch_size: this process's rows of the global batch (`batch_size / processes`),
        shared evenly by its input groups.
    Returns:
      batches of `local_batch_size` rows: this process's input groups' batches
      concatenated in group order (one group, the default for one process: exactly that
      group's stream).
    """
    groups = num_input_groups(config)
    mine = process_groups(groups)
    if local_batch_size % len(mine):
        raise ValueError(
            f"A local batch of {local_batch_size} cannot be shared by {len(mine)} input groups."
        )
    files = group_files(split_files(builder, config.train_split), groups)
    per_group = local_batch_size // len(mine)
    streams = [
        _group_stream(builder, config, epoch, files[g], g, groups, per_group, hint_sources)
        for g in mine
    ]
    if len(streams) == 1:
        return streams[0].prefetch(tf.data.AUTOTUNE)
    ds = tf.data.Dataset.zip(tuple(streams)).map(_concat_batches)
    return ds.prefetch(tf.data.AUTOTUNE)


@tf.autograph.experimental.do_not_convert
def _concat_batches(*batches):
    return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *batches)


def _group_stream(builder, config, epoch, files, group, groups, batch_size, hint_sources):
    """One input group's batches: its files shuffled with (seed, epoch, group), augmented
    with (seed, epoch, position · groups + group). Group 0 of 1 is the single-stream order
    of a one-process run, unchanged."""
    ds = records_with_hints(files, hint_sources)
    ds = ds.shuffle(
        config.shuffle_buffer,
        seed=config.seed * 1000 + epoch + (group << 32),
        reshuffle_each_iteration=False,
    )
    ds = ds.enumerate()
    decode = _decode(builder)

    @tf.autograph.experimental.do_not_convert
    def preprocess(index, record_and_hints):
        record, hints = record_and_hints
        out = _train_preprocess(
            decode(record),
            index * groups + group,
            config.seed,
            epoch,
            config.image_size,
            config.resize_size,
        )
        out.update(hints)
        return out

    ds = ds.map(
        preprocess,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.batch(batch_size, drop_remainder=True)


def eval_preprocess(example, image_size):
    """A decoded test example with its uint8 `image` [H, W, 3] resized to
    [image_size, image_size, 3] (torchvision Resize((224, 224))); `localize` gives users'
    pictures the same."""
    out = dict(example)
    out["image"] = _resize_bicubic(example["image"], [image_size, image_size])
    return out


def eval_batches(builder, config, split: str, batch_size: int, hint_sources=()) -> Iterator[dict]:
    """The whole split, in file order, as numpy batches, the last one padded.

    Every process reads the whole (small) test split so that each can own the metadata of
    every row; `mask` marks the real rows of the padded last batch. Variable-length fields
    (boxes, objects) are padded by `padded_batch`; `num_boxes` / `num_objects` count them.
    With `hint_sources` (`teacher_hints.HintSource`s of this split) each row also carries
    its hints, e.g. `visual_hint` [B, 25, 25] float16, all-NaN where DETR found nothing.
    """
    ds = records_with_hints(split_files(builder, split), hint_sources)
    decode = _decode(builder)

    @tf.autograph.experimental.do_not_convert
    def preprocess(record, hints):
        out = eval_preprocess(decode(record), config.image_size)
        out.update(hints)
        return out

    ds = ds.map(
        preprocess,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )

    @tf.autograph.experimental.do_not_convert
    def add_counts(ex):
        ex = dict(ex)
        ex["num_boxes"] = tf.shape(ex["boxes"])[0]
        if "objects" in ex:
            ex["num_objects"] = tf.shape(ex["objects"]["bbox"])[0]
            ex["swap_len"] = tf.shape(ex["swap_audio"])[0]
        ex["mask"] = True
        return ex

    ds = ds.map(add_counts).padded_batch(batch_size).prefetch(2)
    files = split_files(builder, split)
    read = files + [source.file_for(f) for source in hint_sources for f in files]
    rows = 0
    for batch in numpy_batches(ds, read):
        n = batch["mask"].shape[0]
        rows += n
        if n < batch_size:
            batch = jax.tree.map(lambda x: _pad_rows(x, batch_size), batch)
        yield batch
    expected = builder.info.splits[split].num_examples
    if rows < expected:
        raise_short_shard(
            builder, split, files, f"The {split} split gave {rows} of {expected} rows"
        )


def _pad_rows(x, rows):
    pad = [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, pad)


def make_global(batch: dict, sharding) -> dict:
    """Per-process numpy batch → global `jax.Array`s sharded on the batch axis."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def replicated_global(batch: dict, sharding) -> dict:
    """A batch that every process holds whole → global arrays sharded on the batch axis."""
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), batch
    )


def prefetch_to_device(iterator, size: int, sharding) -> Iterator[dict]:
    """Keeps `size` batches in flight to the devices while the current step runs."""
    queue = collections.deque()
    for batch in itertools.islice(iterator, size):
        queue.append(make_global(batch, sharding))
    for batch in iterator:
        yield queue.popleft()
        queue.append(make_global(batch, sharding))
    while queue:
        yield queue.popleft()
