"""Fake teacher hint shards: a function of each record's own audio, written in the
teacher tool's format (`hint_shards`), so that a batch shows whether every example met
its own hints."""

import numpy as np
import tensorflow as tf

from avkd_jax import input_pipeline
from avkd_jax.datasets import hint_shards

D = 16  # audio_hint length: the first D samples of the clip, scaled
GRID = (5, 5)


def fake_hints(audio):
    """The hints a record's audio determines: [D] and a constant map (NaN for odd audio[0])."""
    a = audio[:D].astype(np.float32) / 32768.0
    v = np.full(GRID, np.nan if audio[0] % 2 else abs(float(audio[0])) / 32768.0)
    return {"audio_hint": a, "visual_hint": v}


def write_fake_hints(builder, split, hints_dir, teacher="fake", mutate=None):
    files = input_pipeline.split_files(builder, split)
    spec = hint_shards.HintSpec(teacher, {"audio_hint": (D,), "visual_hint": GRID}, "test", 0)
    decode = builder.info.features.deserialize_example
    total = 0
    for f in files:
        records = []
        for raw in tf.data.TFRecordDataset(f).as_numpy_iterator():
            ex = decode(raw)
            records.append((ex["id"].numpy().decode(), fake_hints(ex["audio"].numpy())))
        if mutate:
            records = mutate(records)
        total += len(records)
        with tf.io.TFRecordWriter(hint_shards.hint_path(f, teacher, hints_dir)) as w:
            for example_id, hints in records:
                w.write(hint_shards.encode_example(example_id, hints, spec))
    spec = hint_shards.HintSpec(teacher, spec.shapes, "test", total)
    hint_shards.write_spec(hint_shards.spec_path(files[0], teacher, hints_dir), spec)
    return files


def hinted(tiny, hints_dir, teacher="fake"):
    c = tiny.copy_and_resolve_references()
    c.teachers = (teacher,)
    c.hints_dir = str(hints_dir)
    c.alpha_audio = 1000.0
    c.alpha_visual = 100_000.0
    return c
