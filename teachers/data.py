"""Reading a prepared TFDS dataset without its builder class: shards and decoded records.

`tfds.builder_from_directory` reads the dataset's own `dataset_info.json` and
`features.json`, so the teachers need neither the builder's code nor its dependencies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from avkd_jax.errors import DatasetError

# The teachers run on PyTorch; TensorFlow only reads files and must leave the GPU alone.
tf.config.set_visible_devices([], "GPU")

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def _versions(directory: str) -> list[str]:
    found = [
        v
        for v in os.listdir(directory)
        if _VERSION_RE.match(v) and os.path.isfile(os.path.join(directory, v, "dataset_info.json"))
    ]
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def dataset_dir(data_dir: str, dataset: str) -> str:
    """`<data_dir>/<name>/<config>/<version>` of a prepared dataset.

    Args:
      data_dir: the TFDS data directory.
      dataset: `name`, `name/config` or `name/config:version` (`name:version` for a
        dataset without configs). Without a config, the only one on disk is used; without
        a version, the newest prepared one.
    """
    spec, _, version = dataset.partition(":")
    name, _, config = spec.partition("/")
    root = os.path.join(os.path.expanduser(data_dir), name)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no prepared dataset {name!r} in --data_dir={data_dir}")
    if not config and not _versions(root):
        configs = sorted(c for c in os.listdir(root) if _versions(os.path.join(root, c)))
        if len(configs) != 1:
            raise DatasetError(
                f"{root}: {'several' if configs else 'no'} prepared configs "
                f"{configs}: name one with --dataset={name}/<config>"
            )
        config = configs[0]
    directory = os.path.join(root, config) if config else root
    if not os.path.isdir(directory):
        raise DatasetError(f"{directory}: no prepared config {config!r} of {name}")
    versions = _versions(directory)
    if version:
        if version not in versions:
            raise DatasetError(f"{directory}: no prepared version {version} (found {versions})")
    elif not versions:
        raise DatasetError(f"{directory}: no prepared version (no */dataset_info.json)")
    return os.path.join(directory, version or versions[-1])


def open_dataset(data_dir: str, dataset: str):
    """The read-only builder of a prepared dataset (see `dataset_dir`)."""
    return tfds.builder_from_directory(dataset_dir(data_dir, dataset))


def split_shards(builder, split: str) -> list[str]:
    """Paths of the split's TFRecord shards, in shard order."""
    if split not in builder.info.splits:
        raise DatasetError(
            f"{builder.data_dir}: no split {split!r} (has {sorted(builder.info.splits)})"
        )
    return [os.path.join(builder.data_dir, f) for f in builder.info.splits[split].filenames]


def sample_rate(builder) -> int:
    """The `audio` feature's sample rate, from the dataset's metadata."""
    rate = getattr(builder.info.features["audio"], "sample_rate", None)
    if not rate:
        raise DatasetError(f"{builder.data_dir}: the audio feature has no sample_rate")
    return int(rate)


def shard_batches(builder, shard: str, batch_size: int, keys=("image", "audio")) -> Iterator[dict]:
    """The records of one shard, in order, in batches of `batch_size` (the last smaller).

    Yields:
      {'id': list[str], 'image': list of uint8 [H, W, 3] (sizes may differ),
       'audio': int16 [B, N]}, with only the `keys` asked for besides `id`.
    """
    features = builder.info.features

    @tf.autograph.experimental.do_not_convert
    def decode(record):
        ex = features.deserialize_example(record)
        return {k: ex[k] for k in ("id", *keys)}

    names = ("id", *keys)
    ds = tf.data.TFRecordDataset(shard).map(decode)
    batch = {k: [] for k in names}
    for ex in ds.as_numpy_iterator():
        for k, values in batch.items():
            values.append(ex[k].decode() if k == "id" else ex[k])
        if len(batch["id"]) == batch_size:
            yield _finish(batch)
            batch = {k: [] for k in names}
    if batch["id"]:
        yield _finish(batch)


def _finish(batch: dict) -> dict:
    if "audio" in batch:
        batch["audio"] = np.stack(batch["audio"])
    return batch
