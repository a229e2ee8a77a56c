"""TFDS builder for the synthetic audio-visual world (docs/design.md, The synthetic world).

The world is first written in the Flickr-SoundNet raw layout by
`avkd_jax.datasets.synthetic_world` (frames/*.jpg, audio/*.wav, Annotations/*.xml, a train
list and a test csv), then read back through the same layout readers a real Flickr disk
goes through, so the real path is exercised end to end. Beyond the Flickr features it
keeps every object's box and class and an "audio swap" clip (a distractor's sound), which
the evaluation uses for the audio-blind baseline and the audio-swap score.
"""

import dataclasses
import functools
import json
import os
import sys

import numpy as np
import tensorflow_datasets as tfds

from avkd_jax import terminal
from avkd_jax.datasets import av_builder, flickr_layout, media, raw_examples, synthetic_world


@dataclasses.dataclass
class SyntheticAvConfig(tfds.core.BuilderConfig):
    num_train: int = 10_000
    num_test: int = 500
    world_seed: int = 0
    sample_rate: int = 22050
    audio_seconds: float = 3.0


def make_config(
    num_train=10_000, num_test=500, world_seed=0, sample_rate=22050, audio_seconds=3.0
) -> SyntheticAvConfig:
    """A builder config whose name encodes its parameters, so worlds never collide."""
    name = f"n{num_train}_t{num_test}_s{world_seed}_sr{sample_rate}_a{audio_seconds:g}"
    return SyntheticAvConfig(
        name=name,
        num_train=num_train,
        num_test=num_test,
        world_seed=world_seed,
        sample_rate=sample_rate,
        audio_seconds=audio_seconds,
    )


def box_to_bbox(box, frame=256.0):
    """Pixel `[xmin, ymin, xmax, ymax]` in a 256 frame → tfds BBox (normalised yx order)."""
    xmin, ymin, xmax, ymax = (float(np.clip(v / frame, 0.0, 1.0)) for v in box)
    return tfds.features.BBox(ymin=ymin, xmin=xmin, ymax=ymax, xmax=xmax)


class SyntheticAv(av_builder.LoggedPrepare, tfds.core.GeneratorBasedBuilder):
    """Procedural scenes: one sounding object, 0–2 silent distractors, boxes as Flickr's."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [make_config()]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        num_samples = int(round(cfg.sample_rate * cfg.audio_seconds))
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "audio": tfds.features.Audio(
                        shape=(num_samples,), dtype=np.int16, sample_rate=cfg.sample_rate
                    ),
                    # One box per annotator (Flickr: three), empty on train examples.
                    "boxes": tfds.features.Sequence(tfds.features.BBoxFeature()),
                    "annotators": tfds.features.Sequence(np.int32),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(names=synthetic_world.CLASS_NAMES),
                            "sounding": np.bool_,
                        }
                    ),
                    # A sound of the first distractor's class; empty when the scene has none.
                    "swap_audio": tfds.features.Audio(
                        shape=(None,), dtype=np.int16, sample_rate=cfg.sample_rate
                    ),
                    "swap_index": np.int32,
                }
            ),
            supervised_keys=None,
            homepage="https://github.com/avkd-jax",
        )

    def raw_dir(self) -> str:
        """Where the world's raw files go: beside the TFRecords, one folder per config."""
        return os.path.join(self._data_dir_root, "synthetic_av_raw", self.builder_config.name)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        root = self.raw_dir()
        # In a child process: its worker pool must not start from (or re-import) a process
        # that holds TensorFlow's threads or an unguarded __main__.
        terminal.run_child(
            [
                sys.executable,
                "-m",
                "avkd_jax.datasets.synthetic_world",
                f"--root={root}",
                f"--num_train={cfg.num_train}",
                f"--num_test={cfg.num_test}",
                f"--seed={cfg.world_seed}",
                f"--sample_rate={cfg.sample_rate}",
            ]
        )
        return {
            "train": self._generate_examples(root, "train"),
            "test": self._generate_examples(root, "test"),
        }

    def _generate_examples(self, root, split):
        cfg = self.builder_config
        common = {"sample_rate": cfg.sample_rate, "audio_seconds": cfg.audio_seconds}
        if split == "train":
            ids = flickr_layout.read_id_list(os.path.join(root, "train.txt"))
            scenes = {}
            tasks = [raw_examples.ExampleTask(i, root, **common) for i in ids]
        else:
            ids = flickr_layout.read_id_list(os.path.join(root, "test.csv"))
            with open(os.path.join(root, "scenes.json")) as f:
                scenes = json.load(f)
            tasks = [
                raw_examples.ExampleTask(
                    i,
                    root,
                    box_format="flickr",
                    annotation=os.path.join(root, "Annotations", f"{i}.xml"),
                    **common,
                )
                for i in ids
            ]
        # Bad clips are reported, listed in skipped-<split>.tsv and skipped, never zero-filled.
        yield from av_builder.write_split(
            "synthetic_av",
            split,
            tasks,
            self.data_dir,
            read_fn=functools.partial(self._example, scenes=scenes),
            to_features=self._features,
        )

    @staticmethod
    def _example(task, scenes):
        """`raw_examples.read_example` plus the scene's objects and audio-swap clip."""
        example = raw_examples.read_example(task)
        scene = scenes.get(task.example_id)
        objects, swap_audio, swap_index = [], np.zeros([0], np.int16), -1
        if scene is not None:
            objects = [
                {"bbox": box_to_bbox(o["box"]), "label": o["cls"], "sounding": bool(o["sounding"])}
                for o in scene["objects"]
            ]
            if scene.get("swap_index") is not None:
                swap_index = int(scene["swap_index"])
                swap_audio = media.load_audio(
                    os.path.join(task.root, "audio_swap", f"{task.example_id}.wav"),
                    task.sample_rate,
                    task.audio_seconds,
                )
        example.update(objects=objects, swap_audio=swap_audio, swap_index=swap_index)
        return example

    @staticmethod
    def _features(example):
        return {
            **av_builder.core_example(example),
            "objects": example["objects"],
            "swap_audio": example["swap_audio"],
            "swap_index": example["swap_index"],
        }
