"""What the real-data TFDS builders (flickr_soundnet, vggsound) share, and the split writer
every builder (synthetic_av too) uses to skip bad clips without losing track of them.

Features (the contract `input_pipeline.eval_batches` and `protocol.gt_map_of` read):
`id` Text, `image` JPEG (RGB, shorter side 256), `audio` int16 [N] at the config's rate,
`boxes` Sequence of BBoxFeature (normalised ymin, xmin, ymax, xmax; empty on train
clips) and `annotators` Sequence int32.

Beside the TFRecords of each split the builder writes `ids-<split>.txt` (the ids it
holds) and `skipped-<split>.tsv` (id, file, action, reason: every clip skipped and
every box dropped). Both are written inside TFDS's temporary folder, which is renamed
only when the whole build succeeded, so an interrupted build leaves nothing half-done
and its restart builds from scratch.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from avkd_jax import errors, files
from avkd_jax.datasets import raw_examples, sources

SKIPPED_HEADER = "id\tfile\taction\treason\n"
_LOGGED_SKIPS = 20  # Per split: the rest are only counted in the log and kept in the tsv.


def skipped_path(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"skipped-{split}.tsv")


def ids_path(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"ids-{split}.txt")


def core_features(sample_rate: int, audio_seconds: float) -> dict:
    """The five features every builder writes (module docstring)."""
    return {
        "id": tfds.features.Text(),
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "audio": tfds.features.Audio(
            shape=(round(sample_rate * audio_seconds),), dtype=np.int16, sample_rate=sample_rate
        ),
        # Flickr: one box per annotator; VGG-SS: every box of the entry. Empty on train.
        "boxes": tfds.features.Sequence(tfds.features.BBoxFeature()),
        "annotators": tfds.features.Sequence(np.int32),
    }


def core_example(example: dict) -> dict:
    """`raw_examples.read_example`'s output → values of `core_features`."""
    return {
        "id": example["id"],
        "image": io.BytesIO(example["image"]),
        "audio": example["audio"],
        "boxes": [tfds.features.BBox(*map(float, b)) for b in example["boxes"]],
        "annotators": example["annotators"],
    }


def _tsv_field(text) -> str:
    return str(text).replace("\t", " ").replace("\n", " ")


def write_split(
    name: str,
    split: str,
    tasks,
    data_dir: str,
    *,
    to_features=core_example,
    read_fn=raw_examples.read_example,
    prefailed=(),
    notes=(),
    workers: int = 0,
):
    """Reads every task and yields (id, features), skipping and recording bad clips.

    Args:
      name: the dataset name, for messages.
      split: 'train' or 'test'.
      tasks: `raw_examples.ExampleTask`s in list order.
      data_dir: where `ids-<split>.txt` and `skipped-<split>.tsv` go (the builder's data
        directory: TFDS's temporary one while it builds).
      to_features: the example dict → the builder's feature values.
      read_fn: the per-clip reader.
      prefailed: (id, file, reason) of clips known bad before reading (annotation entry).
      notes: (where, reason) annotation problems tied to no clip, reported as such.
      workers: decoding threads (`raw_examples.read_many`).
    Raises:
      ValueError: when not one clip of the split could be read.
    """
    rows = [(i, f, "skipped", r) for i, f, r in prefailed]
    rows += [("", where, "noted", reason) for where, reason in notes]
    kept = []
    for task, result in raw_examples.read_many(tasks, workers, read_fn):
        if isinstance(result, errors.MediaError):
            rows.append((task.example_id, result.path, "skipped", result.reason))
            continue
        rows += [(task.example_id, f, "box dropped", r) for f, r in result["notes"]]
        if task.box_format and len(result["boxes"]) == 0:
            rows.append((task.example_id, task.annotation, "noted", "no usable box: cIoU 0"))
        kept.append(task.example_id)
        yield task.example_id, to_features(result)
    skipped = [r for r in rows if r[2] == "skipped"]
    for i, f, _, reason in skipped[:_LOGGED_SKIPS]:
        logging.warning("%s/%s: skipped %s: %s: %s", name, split, i, f, reason)
    for i, f, action, reason in (r for r in rows if r[2] != "skipped"):
        logging.warning("%s/%s: %s %s: %s: %s", name, split, i, action, f, reason)
    listed = len(tasks) + len(prefailed)
    if skipped:
        logging.warning(
            "%s/%s: skipped %d of %d clips (all listed in %s once the build completes).",
            name,
            split,
            len(skipped),
            listed,
            os.path.basename(skipped_path(data_dir, split)),
        )
    if not kept:
        first = "; ".join(f"{f}: {r}" for _, f, _, r in skipped[:3])
        raise ValueError(
            f"{name}/{split}: none of the {listed} listed clips could be read (e.g. {first}). "
            "Check the raw layout (docs/data.md, Layouts) with python -m avkd_jax.datasets.report."
        )
    os.makedirs(data_dir, exist_ok=True)
    files.write_text(ids_path(data_dir, split), "".join(f"{i}\n" for i in kept))
    files.write_text(
        skipped_path(data_dir, split),
        SKIPPED_HEADER + "".join("\t".join(map(_tsv_field, r)) + "\n" for r in rows),
    )


def read_skipped(data_dir: str, split: str) -> list[tuple[str, str, str, str]] | None:
    """The rows of a prepared split's `skipped-<split>.tsv`, or None if it has none."""
    path = skipped_path(data_dir, split)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = f.read().splitlines()[1:]
    return [tuple((line.split("\t") + [""] * 4)[:4]) for line in lines if line]


class LoggedPrepare:
    """A TFDS builder whose "Downloading and preparing" notices go to the log as ours, in
    words that fit a build from local files (TFDS prints them in bold on stdout)."""

    def _log_download_bytes(self) -> None:
        logging.info("Building %s in %s ...", self.name, self.data_dir)

    def _log_download_done(self) -> None:
        logging.info("Built %s in %s.", self.name, self.data_dir)


@dataclasses.dataclass
class RawAvConfig(tfds.core.BuilderConfig):
    """A real dataset's config: which raw splits (`sources.DatasetSource`) and the PCM."""

    # Not in the repr: TFDS logs the config, and a list holds up to 144k ids.
    source: sources.DatasetSource | None = dataclasses.field(default=None, repr=False)
    sample_rate: int = 22050
    audio_seconds: float = 3.0


def make_config(source: sources.DatasetSource, sample_rate=22050, audio_seconds=3.0):
    """The config for `source`, named after its lists and a digest of its content."""
    parts = []
    for split, s in source.splits().items():
        part = f"{split}: {s.list_path} ({len(s.ids)} ids"
        if s.dropped:
            part += f", {len(s.dropped)} test ids left out"
        parts.append(part + f"; raw root {s.root})")
    return RawAvConfig(
        name=source.config_name(sample_rate, audio_seconds),
        description="; ".join(parts),
        source=source,
        sample_rate=sample_rate,
        audio_seconds=audio_seconds,
    )


class RawAvBuilder(LoggedPrepare, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A real dataset from a researcher's disk (`manual_dir`): train and/or test split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict] = {"1.0.0": "First release."}
    # Configs are made from the user's lists (`make_config`); none is predefined.
    BUILDER_CONFIGS: ClassVar[list] = []
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""  # Set by each dataset.

    def __init__(self, *, workers: int = 0, **kwargs):
        self._workers = workers
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(core_features(cfg.sample_rate, cfg.audio_seconds)),
            supervised_keys=None,
            homepage="https://github.com/avkd-jax",
        )

    def raw_root(self) -> str:
        source = self.builder_config.source
        return (source.train or source.test).root

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs):
        """As TFDS's, with the config's raw root as `manual_dir` unless one is given."""
        if download_config is None:
            download_config = tfds.download.DownloadConfig()
        if download_config.manual_dir is None:
            download_config = dataclasses.replace(download_config, manual_dir=self.raw_root())
        return super().download_and_prepare(
            download_dir=download_dir, download_config=download_config, **kwargs
        )

    def _split_generators(self, dl_manager):
        _ = dl_manager.manual_dir  # TFDS checks it exists and is not empty (else instructions).
        cfg = self.builder_config
        return {
            split: self._generate_examples(split, s) for split, s in cfg.source.splits().items()
        }

    def _generate_examples(self, split, source: sources.SplitSource):
        cfg = self.builder_config
        tasks, prefailed, notes = sources.split_tasks(source, cfg.sample_rate, cfg.audio_seconds)
        yield from write_split(
            self.name,
            split,
            tasks,
            self.data_dir,
            prefailed=prefailed,
            notes=notes,
            workers=raw_examples.default_workers(self._workers, len(tasks)),
        )
