"""Writing a world to disk in the Flickr-SoundNet raw layout, restartably."""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any, Iterable, Iterator

import numpy as np

from avkd_jax import files
from avkd_jax.datasets import flickr_layout, media
from avkd_jax.datasets.synthetic_world.classes import CLASS_NAMES, NUM_CLASSES
from avkd_jax.datasets.synthetic_world.render import IMAGE_SIZE
from avkd_jax.datasets.synthetic_world.scenes import layout_from_rng, render_scene, streams
from avkd_jax.datasets.synthetic_world.sound import SAMPLE_RATE

__all__ = ["scene_id", "write_world"]

# Bump when the generator's output changes, so an old world on disk is never mixed with
# new scenes (WORLD.json records it).
WORLD_VERSION = 1

TEST_ID_OFFSET = 9_000_000
ID_DIGITS = 7
# Parameters of a world being written: WORLD.json is written only once it is complete.
PENDING_NAME = ".WORLD.pending.json"


def scene_id(split: str, index: int) -> str:
    """Zero-padded numeric ids; train and test are disjoint ("0000123" / "9000123")."""
    base = {"train": 0, "test": TEST_ID_OFFSET}[split]
    return f"{base + int(index):0{ID_DIGITS}d}"


def _write_if_changed(path: str, data: bytes) -> bool:
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    files.write_bytes(path, data)
    return True


def _wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _scene_paths(root: str, split: str, id_: str, has_swap: bool) -> dict[str, str]:
    paths = {
        "image": os.path.join(root, "frames", f"{id_}.jpg"),
        "audio": os.path.join(root, "audio", f"{id_}.wav"),
    }
    if split == "test":
        paths["xml"] = os.path.join(root, "Annotations", f"{id_}.xml")
        if has_swap:
            paths["swap"] = os.path.join(root, "audio_swap", f"{id_}.wav")
    return paths


def _scene_file_bytes(key: str, scene: dict[str, Any], id_: str, sample_rate: int) -> bytes:
    """The bytes of one file of a scene; `key` as in `_scene_paths`."""
    if key == "image":
        return media.encode_jpeg(scene["image"], quality=95)
    if key == "audio":
        return _wav_bytes(scene["audio"], sample_rate)
    if key == "swap":
        return _wav_bytes(scene["swap_audio"], sample_rate)
    return flickr_layout.flickr_annotation_bytes(scene["annotator_boxes"], id_)


def _write_scene(task) -> tuple[str, str, dict | None, int]:
    """Worker: writes the missing files of one scene. Returns (split, id, meta, n_written)."""
    root, seed, split, index, sample_rate = task
    id_ = scene_id(split, index)
    rng = streams(seed, split, index)
    layout = layout_from_rng(rng["layout"])
    objects, _, swap_index = layout
    paths = _scene_paths(root, split, id_, swap_index is not None)
    missing = [k for k, p in paths.items() if not os.path.exists(p)]
    if missing:
        scene = render_scene(
            rng, layout, sample_rate, draw_objects=True, include_swap="swap" in missing
        )
        for key in missing:
            files.write_bytes(paths[key], _scene_file_bytes(key, scene, id_, sample_rate))
    meta = None
    if split == "test":
        meta = {"objects": objects, "swap_index": swap_index}
    return split, id_, meta, len(missing)


def _world_params(num_train, num_test, seed, sample_rate) -> dict[str, Any]:
    return {
        "format": "avkd-synthetic-world",
        "version": WORLD_VERSION,
        "seed": int(seed),
        "num_train": int(num_train),
        "num_test": int(num_test),
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "sample_rate": int(sample_rate),
        "image_size": IMAGE_SIZE,
    }


def _check_params_file(path: str, params: dict) -> None:
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            existing = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: unreadable world parameters ({e}); delete the world directory or this file"
        ) from None
    if existing != params:
        diff = {
            k: (existing.get(k), params.get(k))
            for k in sorted(set(existing) | set(params))
            if existing.get(k) != params.get(k)
        }
        raise ValueError(
            f"{path}: the directory holds a different synthetic world (differences, "
            f"on disk vs requested: {diff}). Refusing to mix worlds: use another --root "
            "or delete this one."
        )


def _check_counts(num_train: int, num_test: int) -> None:
    if not 0 <= num_train <= TEST_ID_OFFSET:
        raise ValueError(f"num_train must be in [0, {TEST_ID_OFFSET}], got {num_train}")
    if not 0 <= num_test < 10**ID_DIGITS - TEST_ID_OFFSET:
        raise ValueError(
            f"num_test must be in [0, {10**ID_DIGITS - TEST_ID_OFFSET}), got {num_test}"
        )


def _remove_dead_writers_temporaries(directory: str) -> None:
    """Deletes the temporary files in `directory` whose writing process no longer exists."""
    for name in os.listdir(directory):
        m = files.TMP_RE.search(name)
        if m and not files.pid_alive(int(m.group(1))):
            os.remove(os.path.join(directory, name))


def _claim_root(root: str, params: dict[str, Any]) -> bytes:
    """Checks that `root` holds no other world, prepares its folders and pins `params`.

    Returns:
      the bytes of WORLD.json, written by `_mark_complete` once every file is there.
    Raises:
      ValueError: WORLD.json or the pending parameters of an interrupted run differ.
    """
    done_path = os.path.join(root, "WORLD.json")
    pending_path = os.path.join(root, PENDING_NAME)
    # An interrupted world has no WORLD.json yet; the pending file still pins its params.
    _check_params_file(done_path, params)
    _check_params_file(pending_path, params)
    params_bytes = (json.dumps(params, indent=2, sort_keys=True) + "\n").encode()
    for sub in ("frames", "audio", "Annotations", "audio_swap"):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        _remove_dead_writers_temporaries(d)
    if not os.path.exists(done_path):
        _write_if_changed(pending_path, params_bytes)
    return params_bytes


def _worker_count(workers: int | None, num_tasks: int) -> int:
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    return max(1, min(workers, num_tasks))


@contextlib.contextmanager
def _scene_results(tasks: list[tuple], workers: int) -> Iterator[Iterable[tuple]]:
    """Yields the `_write_scene` results of `tasks`, from this process when workers == 1."""
    if workers == 1:
        yield map(_write_scene, tasks)
        return
    import multiprocessing

    # spawn, not fork: callers (TFDS builders) may hold TF/JAX threads that a fork
    # would copy in a locked state.
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, min(32, len(tasks) // (workers * 8)))
    with ctx.Pool(workers) as pool:
        yield pool.imap_unordered(_write_scene, tasks, chunksize=chunk)


def _write_scenes(tasks: list[tuple], workers: int, progress: bool) -> tuple[dict[str, dict], int]:
    """Writes the missing files of every scene. Returns (test id -> meta, files written)."""
    from avkd_jax import terminal

    test_meta: dict[str, dict] = {}
    written = 0
    with (
        terminal.progress_bar(
            total=len(tasks),
            disable=not progress,
            desc="synthetic world",
            unit="scene",
        ) as bar,
        _scene_results(tasks, workers) as results,
    ):
        for _, id_, meta, n in results:
            written += n
            if meta is not None:
                test_meta[id_] = meta
            bar.update(1)
    return test_meta, written


def _index_files(num_train: int, num_test: int, test_meta: dict[str, dict]) -> dict[str, bytes]:
    """train.txt, test.csv and scenes.json: file name -> bytes."""
    train_ids = [scene_id("train", i) for i in range(num_train)]
    test_ids = [scene_id("test", i) for i in range(num_test)]
    return {
        "train.txt": "".join(f"{i}\n" for i in train_ids).encode(),
        "test.csv": "".join(f"{i},0\r\n" for i in test_ids).encode(),
        "scenes.json": (
            json.dumps({i: test_meta[i] for i in test_ids}, indent=1, sort_keys=True) + "\n"
        ).encode(),
    }


def _mark_complete(root: str, params_bytes: bytes) -> int:
    """Writes WORLD.json and drops the pending parameters. Returns the files written (0/1)."""
    written = _write_if_changed(os.path.join(root, "WORLD.json"), params_bytes)
    pending_path = os.path.join(root, PENDING_NAME)
    if os.path.exists(pending_path):
        os.remove(pending_path)
    return int(written)


def write_world(
    root,
    num_train: int = 10000,
    num_test: int = 500,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, int]:
    """Writes a synthetic world in the Flickr-SoundNet raw layout.

    Layout under `root`:
      frames/<id>.jpg           JPEG quality 95, 256x256
      audio/<id>.wav            int16 mono, 3-5 s at `sample_rate`
      Annotations/<id>.xml      test ids: the 3 annotator boxes (Flickr XML format)
      train.txt                 train ids, one per line
      test.csv                  "id,0" per test id, CRLF (like flickr_test.csv)
      audio_swap/<id>.wav       test ids with a distractor: a sound of the first
                                distractor's class (synthetic-only, for the swap test)
      scenes.json               test id -> {"objects": [...], "swap_index": int|null}
      WORLD.json                the parameters; written last, marks a complete world

    Restartable: every file is written to a temporary name and renamed, existing files are
    skipped, so re-running after an interruption completes the world with identical bytes.

    Args:
      root: output directory (created).
      num_train, num_test: scene counts; ids are "%07d" of index (train) and of
        9,000,000 + index (test).
      seed: world seed.
      workers: processes (default os.cpu_count()); 1 writes in this process.
      progress: show a tqdm bar.
      sample_rate: audio rate in Hz.

    Returns:
      {"scenes": total scenes, "files_written": files (re)written this call}.

    Raises:
      ValueError: `root` already holds (part of) a world with other parameters.
    """
    _check_counts(num_train, num_test)
    root = os.path.abspath(os.fspath(root))
    params_bytes = _claim_root(root, _world_params(num_train, num_test, seed, sample_rate))
    tasks = [(root, int(seed), "train", i, int(sample_rate)) for i in range(num_train)]
    tasks += [(root, int(seed), "test", i, int(sample_rate)) for i in range(num_test)]
    test_meta, written = _write_scenes(tasks, _worker_count(workers, len(tasks)), progress)
    for name, data in _index_files(num_train, num_test, test_meta).items():
        written += _write_if_changed(os.path.join(root, name), data)
    written += _mark_complete(root, params_bytes)
    return {"scenes": len(tasks), "files_written": written}
