"""Our student's maps.npz for every pair a protocol scores, read from the user's raw files.

python -m avkd_jax.pair_maps --checkpoint=RUN --protocol=extended_flickr --media_root=ROOT \\
    --annotations=Annotations/ --test_list=flickr_test.csv \\
    --negatives=flickr_test_plus_silent.csv --out=maps.npz

writes one S/τ map per pair of `scoring.read_pairs(protocol, ...)`, the file
`python -m avkd_jax.score` with the same arguments scores. A pair `<a>__<b>` takes clip a's
picture and clip b's sound, each found under `--media_root` as the dataset builders find
them (`raw_examples.locate`: frames/<id>.jpg or video/<id>.mp4 at the test csv's keyframe;
audio/<id>.wav|flac or the video's sound). IS3 reads `images/<stem>.jpg` and
`audio_waw/<stem>.wav` (or `audio_wav/`). Negative audio adds `<id>__silence` (zeros),
`<id>__noise` (`negative_audio.image_noise`, as `--mode=eval`) and
one off-screen `<id>__<audio id>` per image (`negative_audio.pick_offscreen`: VGG-SS by
the classes of vggss.json; Flickr, which has no classes, with each clip its own class, so
any other test clip). Inputs go through exactly what `localize` / evaluation do.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys

import numpy as np
from absl import app, flags

from avkd_jax import audio, localize, terminal
from avkd_jax.datasets import flickr_layout, media, raw_examples, vggss_annotations
from avkd_jax.datasets import video as video_lib
from avkd_jax.errors import MediaError
from avkd_jax.eval import annotations, fusion, maps_file, negative_audio, scoring

SILENCE, NOISE = "silence", "noise"
IS3_IMAGES = "images"
IS3_AUDIO = ("audio_waw", "audio_wav")  # The release README's spelling, the authors' disk's.


@dataclasses.dataclass(frozen=True)
class Pair:
    """One map to compute.

    Attributes:
      key: its key in maps.npz.
      image: the clip id (IS3: stem) whose picture is shown.
      sound: the clip id (IS3: stem) heard, or SILENCE / NOISE.
    """

    key: str
    image: str
    sound: str


def offscreen_ids(name: str, pairs: scoring.Pairs, annotation_path, seed: int = 0) -> dict:
    """Negative audio: image id → its off-screen clip (`negative_audio.pick_offscreen` over
    the annotated test ids); VGG-SS by vggss.json's classes, Flickr each id its own class."""
    ids = [i for i in pairs.ids if i in pairs.truth]
    if scoring.get(name).fmt == annotations.VGGSS:
        known = vggss_annotations.read_vggss_json(annotation_path).classes
        lacking = [i for i in ids if not known.get(i)]
        if lacking:
            raise MediaError(
                annotation_path, f"no class for {len(lacking)} id(s): {maps_file.listed(lacking)}"
            )
        classes = {i: known[i] for i in ids}
    else:
        classes = {i: i for i in ids}
    return negative_audio.pick_offscreen(ids, classes, seed)


def pair_list(name: str, pairs: scoring.Pairs, negatives=None, offscreen=None) -> list:
    """Every pair of `pairs` (`scoring.read_pairs`) as `Pair`s, grouped by image.

    Args:
      negatives: the extended protocols' *_plus_silent.csv, which names each negative
        key's image and sound.
      offscreen: negative audio's image id → off-screen clip id (`offscreen_ids`).
    """
    p = scoring.get(name)
    split = {}
    if negatives is not None:
        split = {
            annotations.pair_key(a, b): (a, b) for a, b in annotations.read_negatives(negatives)
        }
    ids = set(pairs.ids)
    out = []
    for key, truth in pairs.truth.items():
        if p.family == scoring.IS3 or key in ids:
            out.append(Pair(key, key, key))
        elif p.family == scoring.NEGATIVE_AUDIO:
            image, kind, _ = negative_audio.parse_pair_key(key, ids)
            out.append(Pair(key, image, kind))
        else:
            out.append(Pair(key, *split[key]))
    for image, sound in (offscreen or {}).items():
        out.append(Pair(negative_audio.pair_key(image, "offscreen", sound), image, sound))
    order = {i: k for k, i in enumerate(dict.fromkeys(q.image for q in out))}
    return sorted(out, key=lambda q: order[q.image])


class Media:
    """Finds and reads a clip's picture and sound under `root` as the builders do.

    Args:
      root: the raw root (frames/, audio/, video/; IS3: images/, audio_waw/).
      config: the run's config (sample_rate, audio_seconds, image_size).
      is3: IS3's layout: stem → its `is3.load_is3` entry (the files' base names), or None.
      keyframes: id → the test csv's keyframe, for clips read from video.
    """

    def __init__(self, root, config, is3=None, keyframes=None):
        self.root, self.config, self.is3 = os.fspath(root), config, is3
        self.keyframes = dict(keyframes or {})
        self.num_samples = int(round(config.sample_rate * config.audio_seconds))

    def _task(self, clip: str) -> raw_examples.ExampleTask:
        return raw_examples.ExampleTask(
            clip,
            self.root,
            self.config.sample_rate,
            self.config.audio_seconds,
            keyframe=self.keyframes.get(clip),
        )

    def _path(self, clip: str, what: str) -> str:
        """The file of `clip`'s 'image' or 'audio'; MediaError naming what was looked for."""
        if self.is3:
            folders = (IS3_IMAGES,) if what == "image" else IS3_AUDIO
            name = self.is3[clip][what]
            for folder in folders:
                path = os.path.join(self.root, folder, name)
                if os.path.exists(path):
                    return path
            others = "".join(f", nor {f}/{name}" for f in folders[1:])
            raise MediaError(os.path.join(self.root, folders[0], name), f"missing{others}")
        found = raw_examples.locate(self._task(clip))[what]
        if found is None:
            for path, reason in raw_examples.missing_files(self._task(clip)):
                if path.startswith(
                    os.path.join(self.root, "frames" if what == "image" else "audio")
                ):
                    raise MediaError(path, reason)
        return found

    def image(self, clip: str) -> np.ndarray:
        """The model's uint8 `[S, S, 3]` input of `clip`'s picture (`localize.model_image`)."""
        path = self._path(clip, "image")
        if path.lower().endswith(flickr_layout.VIDEO_EXTENSIONS):
            stored = video_lib.load_video_frame(path, self.keyframes.get(clip))
        else:
            stored = media.load_image(path)
        return localize.model_image(stored, self.config.image_size)

    def sound(self, image: str, sound: str) -> np.ndarray:
        """`[N]` float32 PCM at int16 scale: `sound`'s clip, or SILENCE / NOISE for `image`."""
        if sound == SILENCE:
            return negative_audio.silence(self.num_samples)
        if sound == NOISE:
            return negative_audio.image_noise(image, self.num_samples) * np.float32(audio.PCM_SCALE)
        path = self._path(sound, "audio")
        if path.lower().endswith(flickr_layout.VIDEO_EXTENSIONS):
            pcm = video_lib.load_video_audio(
                path, self.config.sample_rate, self.config.audio_seconds
            )
        else:
            pcm = media.load_audio(path, self.config.sample_rate, self.config.audio_seconds)
        return pcm.astype(np.float32)

    def read_group(self, group: list) -> list:
        """One image's pairs → [(pair, image `[S, S, 3]`, pcm `[N]`) or (pair, MediaError)]."""
        try:
            image = self.image(group[0].image)
        except MediaError as e:
            return [(q, e) for q in group]
        out = []
        for q in group:
            try:
                out.append((q, image, self.sound(q.image, q.sound)))
            except MediaError as e:
                out.append((q, e))
        return out


def _groups(pair_list_: list) -> list:
    groups: dict = {}
    for q in pair_list_:
        groups.setdefault(q.image, []).append(q)
    return list(groups.values())


def _read_ahead(reader: Media, groups: list, workers: int):
    """`reader.read_group` of each group, in order, at most 4 × workers groups in flight."""
    if workers <= 1:
        for g in groups:
            yield from reader.read_group(g)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        window = []
        for g in groups:
            window.append(pool.submit(reader.read_group, g))
            if len(window) >= 4 * workers:
                yield from window.pop(0).result()
        for future in window:
            yield from future.result()


def compute_maps(
    run: localize.Run,
    reader: Media,
    pairs: list,
    batch_size: int = 32,
    allow_missing: bool = False,
    workers: int = 4,
    progress: bool = True,
):
    """The S/τ map `[h, w]` float32 of every pair.

    Returns:
      (key → map, [(key, MediaError)] of the pairs left out: only with `allow_missing`).
    Raises:
      MediaError: (without `allow_missing`) a pair's file is missing or unreadable, naming
        the pair's key and the file.
    """
    if batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {batch_size}")
    forward = localize._jitted(fusion.model_maps, run.model)  # pylint: disable=protected-access
    scale = np.float32(1.0 / run.config.tau)
    maps, failed, batch = {}, [], []

    def flush():
        # Padded to batch_size: one compiled shape.
        keys = [k for k, _, _ in batch]
        images = np.stack([i for _, i, _ in batch])
        pcm = np.stack([s for _, _, s in batch])
        pad = batch_size - len(batch)
        if pad:
            images = np.concatenate([images, np.repeat(images[:1], pad, 0)])
            pcm = np.concatenate([pcm, np.repeat(pcm[:1], pad, 0)])
        s = np.asarray(forward(run.variables, images, pcm), np.float32)
        for k, m in zip(keys, s):
            maps[k] = m * scale
        batch.clear()

    bar = None
    if progress:
        bar = terminal.progress_bar(total=len(pairs), unit="pair")
    for item in _read_ahead(reader, _groups(pairs), workers):
        if bar is not None:
            bar.update(1)
        if len(item) == 2:
            q, e = item
            if not allow_missing:
                raise MediaError(e.path, f"pair {q.key}: {e.reason}") from None
            failed.append((q.key, e))
            continue
        q, image, pcm = item
        batch.append((q.key, image, pcm))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if bar is not None:
        bar.close()
    return maps, failed


def _keyframes(test_list) -> dict:
    if test_list and os.fspath(test_list).lower().endswith(".csv"):
        return flickr_layout.read_keyframes(test_list)
    return {}


def make_pair_maps(
    checkpoint: str,
    protocol: str,
    media_root: str,
    annotation_path,
    out: str,
    test_list=None,
    negatives=None,
    batch_size: int = 32,
    allow_missing: bool = False,
    offscreen_seed: int = 0,
    workers: int = 4,
    progress: bool = True,
) -> dict:
    """Writes `out`, the maps of every pair of `protocol` (see the module docstring).

    Returns:
      {'out', 'n_maps', 'left_out': [(key, reason)], 'step'}.
    Raises:
      ValueError / MediaError: a bad argument, list or annotation; (without
        `allow_missing`) a pair's missing or unreadable file, naming the key and path.
    """
    if not os.path.isdir(media_root):
        raise MediaError(media_root, "not a folder: --media_root must hold the raw clips")
    pairs = scoring.read_pairs(protocol, annotation_path, test_list, negatives)
    family = scoring.get(protocol).family
    offscreen = None
    if family == scoring.NEGATIVE_AUDIO:
        offscreen = offscreen_ids(protocol, pairs, annotation_path, offscreen_seed)
    # Ids without an annotation are not scored (the scorer leaves out their pairs).
    unannotated = set(pairs.unannotated)
    todo = [
        q
        for q in pair_list(protocol, pairs, negatives, offscreen)
        if q.image not in unannotated and q.key not in unannotated
    ]
    run = localize.load_run(checkpoint)
    is3_entries = pairs.truth if family == scoring.IS3 else None
    reader = Media(media_root, run.config, is3_entries, _keyframes(test_list))
    maps, failed = compute_maps(run, reader, todo, batch_size, allow_missing, workers, progress)
    if family == scoring.NEGATIVE_AUDIO:
        # An image without its own map cannot be scored (its thresholds come from it).
        dropped = {q.image for q in todo if q.key == q.image and q.key not in maps}
        for q in todo:
            if q.image in dropped and q.key in maps:
                del maps[q.key]
                failed.append((q.key, MediaError(q.image, "its own pair has no map")))
    if not maps:
        raise MediaError(media_root, f"no pair of {protocol} could be read")
    maps_file.write_maps(out, maps)
    return {
        "out": out,
        "n_maps": len(maps),
        "left_out": [(k, str(e)) for k, e in failed],
        "step": run.step,
    }


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags, defined when run as a program only: `localize`, which this
    imports, defines --checkpoint and --out for its own command line, replaced here."""
    for name in ("checkpoint", "out"):
        if name in FLAGS:
            delattr(FLAGS, name)
    flags.DEFINE_string("checkpoint", None, "A training workdir (config.json + checkpoints/).")
    flags.DEFINE_string("protocol", None, "One of: " + ", ".join(scoring.known()) + ".")
    flags.DEFINE_string(
        "media_root", None, "The raw clips: frames/, audio/, video/ (IS3: images/, audio_waw/)."
    )
    flags.DEFINE_string(
        "annotations", None, "Flickr's Annotations/ folder, vggss.json, or the IS3 json."
    )
    flags.DEFINE_string("test_list", None, "The test ids: flickr_test.csv, vggss_test.csv, ...")
    flags.DEFINE_string("negatives", None, "The extended protocols' *_test_plus_silent.csv.")
    flags.DEFINE_integer("batch_size", 32, "Pairs per forward pass.")
    flags.DEFINE_integer("offscreen_seed", 0, "Negative audio: the seed of the off-screen draw.")
    flags.DEFINE_integer("workers", 4, "Threads reading media ahead (0: none).")
    flags.DEFINE_bool("allow_missing", False, "Leave out pairs whose media is missing, counted.")
    flags.DEFINE_string("out", None, "Where to write maps.npz.")
    flags.mark_flags_as_required(["checkpoint", "protocol", "media_root", "annotations", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    terminal.setup()
    terminal.attach_log_file(None)
    try:
        result = make_pair_maps(
            FLAGS.checkpoint,
            FLAGS.protocol,
            FLAGS.media_root,
            FLAGS.annotations,
            FLAGS.out,
            FLAGS.test_list,
            FLAGS.negatives,
            FLAGS.batch_size,
            FLAGS.allow_missing,
            FLAGS.offscreen_seed,
            FLAGS.workers,
        )
    except (ValueError, localize.RunError) as e:
        sys.exit(f"error: {e}")
    if result["left_out"]:
        print(f"left out {len(result['left_out'])} pair(s) whose media is missing or unreadable:")
        for key, why in result["left_out"][: maps_file.LISTED]:
            print(f"  {key}: {why}")
    print(
        f"wrote {result['n_maps']} maps (step {result['step']}) to {os.path.abspath(result['out'])}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
