"""Small PyTorch helpers shared by the teachers: safe checkpoint loading, devices, threads."""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections.abc import Callable

import torch

from avkd_jax.errors import CheckpointError


def load_checkpoint(path: str, map_location="cpu"):
    """`torch.load(path, weights_only=True)` with errors that name the file.

    `weights_only=True` lets the unpickler build tensors, dicts, lists and numbers only: a
    checkpoint from the internet cannot run code when it is opened.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: weights file does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused: the file holds more than tensors (its pickle would build "
            f"arbitrary objects or run code), and it is only opened with "
            f"torch.load(weights_only=True). Re-save a plain state_dict. ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, LookupError) as e:
        # LookupError: the legacy unpickler's KeyError / IndexError on bytes that are no pickle.
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e!r})") from None


def device(name: str) -> torch.device:
    """'cpu' or 'cuda' (or 'cuda:N'); a clear error when CUDA is asked for and absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device={name}: this PyTorch has no CUDA device (use --device=cpu)")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"--device={name}: expected 'cpu' or 'cuda'")
    return torch.device(name)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        return os.cpu_count() or 1


def use_all_cores() -> None:
    torch.set_num_threads(available_cores())


@dataclasses.dataclass
class Teacher:
    """A frozen teacher as the extractor sees it.

    Attributes:
      name: the hint files' suffix (`<data shard>.hints-<name>`).
      shapes: hint name → per-example shape, e.g. {'visual_hint': (25, 25)}.
      source: where the weights came from (a path, or 'random'), recorded in the spec.
      inputs: the data fields it reads ('image' and/or 'audio').
      batch_size: its default batch size.
      compute: a batch {'id', 'image': list of uint8 [H, W, 3], 'audio': int16 [B, N],
        'sample_rate': int} → hint name → float32 [B, *shape].
    """

    name: str
    shapes: dict
    source: str
    inputs: tuple
    batch_size: int
    compute: Callable[[dict], dict]


def weights_source(weights: str | None, random_weights: bool, teacher: str) -> str:
    """The spec's `source`; refuses to run a teacher on random weights unless asked to."""
    if weights and random_weights:
        raise ValueError(f"--teacher={teacher}: give --weights or --random_weights, not both")
    if weights:
        return os.path.abspath(weights)
    if not random_weights:
        raise ValueError(
            f"--teacher={teacher} needs --weights=PATH (random weights give meaningless hints; "
            "--random_weights is for tests and benchmarks only)"
        )
    if teacher not in _WARNED_RANDOM:
        _WARNED_RANDOM.add(teacher)
        logging.getLogger("teachers").warning(
            "!!! %s teacher with RANDOM weights: its hints are noise; use them for tests "
            "and benchmarks only !!!",
            teacher,
        )
    return "random"


_WARNED_RANDOM: set = set()
