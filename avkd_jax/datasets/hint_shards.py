"""Hint shards: teacher outputs stored beside the data shards, record for record (docs/design.md, Data flow).

`python -m teachers.extract` writes, for every TFDS data shard `<dir>/<name>`, a hint shard
`<hints_dir>/<name>.hints-<teacher>` (a TFRecord file) whose i-th record holds the `id` of
the data shard's i-th record and that teacher's hint tensors as float16, plus one spec file
per split, `<hints_dir>/<dataset>-<split>.hints-<teacher>.json`, naming the tensors and
their shapes. The input pipeline zips each data shard with its hint shards and checks the
ids as it reads.

Hint tensors (by name, the same for every teacher that provides them):
  `audio_hint`   [D]        the audio teacher's embedding (PANNs Cnn14: D = 2048).
  `visual_hint`  [h, w]     the visual teacher's map (DETR cross-attention: 25 × 25), NaN
                            everywhere when the teacher found nothing; or
                 [h, w, C]  a feature map (`--visual_hint=backbone`: DETR's ResNet-50 at the
                            student's grid, C = 2048).

This module is shared by the PyTorch side (`teachers/`) and the JAX side: it imports
numpy and TensorFlow only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from avkd_jax import files
from avkd_jax.errors import HintError

AUDIO_HINT = "audio_hint"
VISUAL_HINT = "visual_hint"
HINT_NAMES = (AUDIO_HINT, VISUAL_HINT)
SPEC_VERSION = 1

_SHARD_RE = re.compile(r"^(?P<prefix>.+)\.tfrecord-\d{5}-of-\d{5}$")
_HINT_DTYPE = np.dtype("<f2")  # little-endian float16, whatever the host


@dataclasses.dataclass(frozen=True)
class HintSpec:
    """What one teacher's hint shards of one split hold.

    Attributes:
      teacher: the name in the file suffix (`detr`, `panns`, `synthetic`, ...).
      shapes: hint name → shape, e.g. {'visual_hint': (25, 25)}.
      source: where the teacher's weights came from (a path or 'random'), for the record.
      num_examples: records over all shards of the split.
    """

    teacher: str
    shapes: dict
    source: str = ""
    num_examples: int = 0

    def __post_init__(self):
        unknown = set(self.shapes) - set(HINT_NAMES)
        if unknown:
            raise HintError(f"teacher {self.teacher!r}: unknown hint names {sorted(unknown)}")
        object.__setattr__(
            self, "shapes", {k: tuple(int(d) for d in v) for k, v in self.shapes.items()}
        )

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        d["version"] = SPEC_VERSION
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str = "<spec>") -> HintSpec:
        try:
            d = json.loads(text)
            if d.pop("version", None) != SPEC_VERSION:
                raise HintError(f"{path}: hint spec version is not {SPEC_VERSION}")
            return cls(**d)
        except (ValueError, TypeError) as e:
            if isinstance(e, HintError) and str(e).startswith(path):
                raise
            raise HintError(f"{path}: not a valid hint spec ({e})") from None


# ----------------------------------------------------------------------------- file names


def split_prefix(data_shard: str) -> str:
    """`.../synthetic_av-train.tfrecord-00000-of-00004` → `synthetic_av-train`."""
    m = _SHARD_RE.match(os.path.basename(data_shard))
    if not m:
        raise HintError(f"{data_shard}: not a TFDS shard name (<name>.tfrecord-NNNNN-of-NNNNN)")
    return m.group("prefix")


def hint_path(data_shard: str, teacher: str, hints_dir: str | None = None) -> str:
    """The hint shard of `data_shard` for `teacher` (beside it unless `hints_dir`)."""
    d = hints_dir or os.path.dirname(data_shard)
    return os.path.join(d, f"{os.path.basename(data_shard)}.hints-{teacher}")


def spec_path(data_shard: str, teacher: str, hints_dir: str | None = None) -> str:
    """The spec file of the split `data_shard` belongs to, for `teacher`."""
    d = hints_dir or os.path.dirname(data_shard)
    return os.path.join(d, f"{split_prefix(data_shard)}.hints-{teacher}.json")


def write_spec(path: str, spec: HintSpec) -> None:
    files.write_text(path, spec.to_json())


def read_spec(path: str) -> HintSpec:
    if not os.path.exists(path):
        raise HintError(f"{path}: no hint spec (hints not extracted for this split?)")
    with open(path) as f:
        return HintSpec.from_json(f.read(), path)


# -------------------------------------------------------------------------------- records


def encode_example(example_id: str | bytes, hints: dict, spec: HintSpec) -> bytes:
    """One hint record: `id` and each hint of `spec` as raw little-endian float16 bytes.

    Args:
      example_id: the data record's `id`.
      hints: name → array of the spec's shape (any float dtype; stored as float16).
    """
    if isinstance(example_id, str):
        example_id = example_id.encode()
    if set(hints) != set(spec.shapes):
        raise HintError(
            f"teacher {spec.teacher!r}: got hints {sorted(hints)}, spec says {sorted(spec.shapes)}"
        )
    feature = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[example_id]))}
    for name, value in hints.items():
        value = np.asarray(value)
        if value.shape != spec.shapes[name]:
            raise HintError(
                f"teacher {spec.teacher!r}, id {example_id.decode()}: {name} has shape "
                f"{value.shape}, spec says {spec.shapes[name]}"
            )
        raw = value.astype(_HINT_DTYPE).tobytes()
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def decode_example(serialized: bytes, spec: HintSpec) -> tuple[str, dict]:
    """numpy inverse of `encode_example`: (id, name → float16 array)."""
    example = tf.train.Example.FromString(serialized)
    f = example.features.feature
    out = {}
    for name, shape in spec.shapes.items():
        raw = f[name].bytes_list.value[0]
        out[name] = np.frombuffer(raw, dtype=_HINT_DTYPE).reshape(shape)
    return f["id"].bytes_list.value[0].decode(), out


def tf_parser(spec: HintSpec, path: str = "<hint shard>"):
    """A tf.data map function: serialized hint record → {'id': string, name: float16[...]}.

    A tensor of another size than the spec's (a shard of other hints, or not float16)
    fails with an InvalidArgumentError naming `path`, the tensor and the record's id.
    """
    features = {"id": tf.io.FixedLenFeature([], tf.string)}
    features.update({name: tf.io.FixedLenFeature([], tf.string) for name in spec.shapes})

    @tf.autograph.experimental.do_not_convert
    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        out = {"id": ex["id"]}
        for name, shape in spec.shapes.items():
            flat = tf.io.decode_raw(ex[name], tf.float16, little_endian=True)
            check = tf.debugging.Assert(
                tf.equal(tf.size(flat), int(np.prod(shape))),
                [
                    (
                        f"{path}: {name} does not hold the {shape} float16 values its spec "
                        "says (re-extract the hints); record id, values:"
                    ),
                    ex["id"],
                    tf.size(flat),
                ],
            )
            with tf.control_dependencies([check]):
                out[name] = tf.reshape(flat, shape)
        return out

    return parse


def data_ids(data_shard: str) -> list[str]:
    """The `id` of every record of a TFDS data shard, in order."""
    features = {"id": tf.io.FixedLenFeature([], tf.string)}
    ids = []
    for record in tf.data.TFRecordDataset(data_shard):
        ids.append(tf.io.parse_single_example(record, features)["id"].numpy().decode())
    return ids


def count_records(path: str) -> int:
    """Records in a TFRecord file; HintError when it is missing or truncated/corrupt."""
    if not os.path.exists(path):
        raise HintError(f"{path}: hint shard is missing")
    try:
        return files.count_records(path)
    except tf.errors.DataLossError as e:
        raise HintError(f"{path}: truncated or corrupt TFRecord file ({e.message})") from None


def finite_or_nothing_found(name: str, value, nan_ok=(VISUAL_HINT,)) -> bool:
    """True when a hint is all finite, or a `nan_ok` hint that is NaN everywhere."""
    value = np.asarray(value)
    return bool(np.isfinite(value).all() or (name in nan_ok and np.isnan(value).all()))


def verify_shard(data_shard: str, hint_shard: str, spec: HintSpec, nan_ok=(VISUAL_HINT,)) -> int:
    """Checks one hint shard against its data shard, record by record.

    The same number of records, the same ids in the same order, every tensor of the spec's
    shape, and no NaN or infinity except a `visual_hint` that is NaN everywhere (the
    visual teacher's "nothing found").

    Returns:
      the number of records.
    Raises:
      HintError naming the shard, the record index and the id.
    """
    ids = data_ids(data_shard)
    count_records(hint_shard)  # Truncation first: a clear message before any id mismatch.
    count = 0
    for n, record in enumerate(tf.data.TFRecordDataset(hint_shard).as_numpy_iterator()):
        try:
            hint_id, hints = decode_example(record, spec)
        except (KeyError, IndexError, ValueError) as e:
            raise HintError(
                f"{hint_shard}: record {n} is not a {spec.teacher} hint ({e})"
            ) from None
        if n >= len(ids):
            raise HintError(f"{hint_shard}: more records than {data_shard} ({len(ids)})")
        if hint_id != ids[n]:
            raise HintError(
                f"{hint_shard}: record {n} has id {hint_id!r} but {data_shard} has {ids[n]!r} "
                "there: the hint shard does not belong to this data shard (re-extract it)"
            )
        for name, value in hints.items():
            if finite_or_nothing_found(name, value, nan_ok):
                continue
            raise HintError(f"{hint_shard}: record {n} (id {hint_id}): {name} has NaN or inf")
        count += 1
    if count != len(ids):
        raise HintError(
            f"{hint_shard}: {count} records but {data_shard} has {len(ids)}: the hint shard is "
            "truncated (re-run the extraction)"
        )
    return count
