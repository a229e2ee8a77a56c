"""tf.data over the TFDS shards, per process, to global `jax.Array`s.

Images leave the host as uint8 and audio as int16 PCM: normalisation and the
log-spectrogram happen on the device, inside the model (`models.AVC`), which keeps
host-to-device traffic 4× smaller than float32 and the host CPU free for decoding.

Training order is a pure function of (seed, epoch): files are read in a fixed order, the
shuffle and every augmentation are seeded from (seed, epoch, position), so a run resumed
from step s reproduces exactly the batches an uninterrupted run would have seen.
"""

import collections
import itertools
import os
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

# tf.data must not grab a GPU that JAX wants; on CPU this is a no-op.
tf.config.set_visible_devices([], "GPU")


def split_files(builder, split: str) -> list[str]:
    """The TFRecord shard paths of a prepared split, in shard order."""
    info = builder.info.splits[split]
    return [os.path.join(builder.data_dir, f) for f in info.filenames]


def process_files(files: list[str]) -> list[str]:
    """This process's share of the shard files (DESIGN §7)."""
    count, index = jax.process_count(), jax.process_index()
    if len(files) < count:
        raise ValueError(
            f"{len(files)} shard files cannot be split over {count} processes; "
            "rebuild the dataset with more shards."
        )
    return files[index::count]


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


def train_dataset(builder, config, epoch: int, local_batch_size: int) -> tf.data.Dataset:
    """One epoch of this process's training batches (uint8 images, int16 PCM)."""
    files = process_files(split_files(builder, config.train_split))
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=None)
    ds = ds.shuffle(
        config.shuffle_buffer, seed=config.seed * 1000 + epoch, reshuffle_each_iteration=False
    )
    ds = ds.enumerate()
    decode = _decode(builder)

    @tf.autograph.experimental.do_not_convert
    def preprocess(index, record):
        return _train_preprocess(
            decode(record), index, config.seed, epoch, config.image_size, config.resize_size
        )

    ds = ds.map(
        preprocess,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.batch(local_batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _eval_preprocess(example, image_size):
    """Test images are resized to `image_size`² (torchvision Resize((224, 224)))."""
    out = dict(example)
    out["image"] = _resize_bicubic(example["image"], [image_size, image_size])
    return out


def eval_batches(builder, config, split: str, batch_size: int) -> Iterator[dict]:
    """The whole split, in file order, as numpy batches, the last one padded.

    Every process reads the whole (small) test split so that each can own the metadata of
    every row; `mask` marks the real rows of the padded last batch. Variable-length fields
    (boxes, objects) are padded by `padded_batch`; `num_boxes` / `num_objects` count them.
    """
    ds = tf.data.TFRecordDataset(split_files(builder, split))
    decode = _decode(builder)

    @tf.autograph.experimental.do_not_convert
    def preprocess(record):
        return _eval_preprocess(decode(record), config.image_size)

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
    for batch in ds.as_numpy_iterator():
        n = batch["mask"].shape[0]
        if n < batch_size:
            batch = jax.tree.map(lambda x: _pad_rows(x, batch_size), batch)
        yield batch


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
