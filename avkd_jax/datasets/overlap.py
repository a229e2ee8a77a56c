"""Train/test overlap: test clips that a training list also holds.

On the public lists thousands of VGG-SS test ids are in the 144k train list: a model
trained on them is evaluated on clips it has seen. The builders leave test ids out of
the train split by default; `check_train_test_overlap` is the guard at training start.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from avkd_jax.datasets import av_builder


def list_overlap(train_ids, test_ids) -> list[str]:
    """The test ids that are also train ids, in test order."""
    train = set(train_ids)
    return [i for i in dict.fromkeys(test_ids) if i in train]


def split_ids(builder, split: str) -> list[str]:
    """The ids of a prepared split: its `ids-<split>.txt`, else read from its TFRecords."""
    path = av_builder.ids_path(builder.data_dir, split)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().split()
    files = [os.path.join(builder.data_dir, f) for f in builder.info.splits[split].filenames]
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)["id"])
    return [i.decode() for i in ds.as_numpy_iterator()]


def check_train_test_overlap(builder, train_split: str, eval_sets: dict, allow: bool) -> dict:
    """Compares a prepared train split's ids with every evaluation set's.

    Args:
      builder: the prepared training builder.
      eval_sets: name → `datasets.EvalSet` (prepared).
      allow: `config.allow_test_overlap`: log the overlap instead of stopping.
    Returns:
      name → overlapping ids (possibly empty).
    Raises:
      ValueError: some train ids are eval ids and `allow` is False; the message gives
        the count, a few ids and the flag.
    """
    train = set(split_ids(builder, train_split))
    overlaps = {}
    for name, s in eval_sets.items():
        overlaps[name] = list_overlap(train, split_ids(s.builder, s.split))
    found = {n: ids for n, ids in overlaps.items() if ids}
    detail = "; ".join(
        f"{len(ids)} with {n} (e.g. {', '.join(ids[:5])})" for n, ids in found.items()
    )
    if found and allow:
        logging.warning("Training on clips of the evaluation sets (allowed): %s.", detail)
    elif found:
        raise ValueError(
            f"The train split shares clips with the evaluation sets: {detail}. A model "
            "trained on them is tested on clips it has seen. Rebuild the train split without "
            "them (the default: the prepared split predates the current lists) or set "
            "config.allow_test_overlap=True to train anyway."
        )
    return overlaps
