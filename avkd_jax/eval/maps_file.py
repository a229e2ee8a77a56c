"""`maps.npz`: one 2-D map per (image, sound) pair, the file `python -m avkd_jax.score` reads
and `--mode=eval --config.save_maps=True` writes.

Keys are `annotations.pair_key`'s (`<id>` for a clip with its own sound,
`<image id>__<audio id>` for a mismatched pair, the image file's stem for IS3); values
any size `[h, w]`, finite.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from avkd_jax import files
from avkd_jax.datasets import media
from avkd_jax.errors import MediaError

# How many keys an error message lists before it says how many more there are.
LISTED = 5


def listed(keys) -> str:
    """The first `LISTED` of `keys`, sorted, and how many more."""
    keys = sorted(keys)
    more = f" and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
    return ", ".join(keys[:LISTED]) + more


def read_maps(path) -> dict:
    """Reads a maps file.

    Returns:
      key → `[h, w]` float64.
    Raises:
      MediaError: the file is missing or not an npz, or a map is not 2-D, not numeric,
        or has a NaN or infinite value (the key is named).
    """
    path = media.check_file(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise MediaError(path, f"not a .npz file of maps ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise MediaError(path, "a single array, not a .npz of one map per pair")
    out = {}
    with npz:
        for key in npz.files:
            try:
                m = npz[key]
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise MediaError(path, f"map {key!r} is unreadable ({e})") from None
            if m.ndim != 2 or min(m.shape) < 1:
                raise MediaError(path, f"map {key!r} has shape {m.shape}; expected [h, w]")
            if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
                raise MediaError(path, f"map {key!r} has dtype {m.dtype}; expected numbers")
            if not np.isfinite(m).all():
                bad = int(np.sum(~np.isfinite(m)))
                raise MediaError(path, f"map {key!r} has {bad} NaN or infinite value(s)")
            out[key] = m.astype(np.float64)
    if not out:
        raise MediaError(path, "holds no maps")
    return out


def write_maps(path, maps: dict) -> None:
    """Writes key → `[h, w]` maps as float32 (written whole or not at all)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, np.float32) for k, v in maps.items()})
    files.write_bytes(path, buf.getvalue())


def match_keys(maps: dict, expected, path, allow_missing: bool = False) -> list:
    """Checks a maps file's keys against the pairs a protocol scores.

    Args:
      maps: key → map (`read_maps`).
      expected: the keys the protocol scores.
      allow_missing: leave pairs without a map out (as the reference test loaders leave
        out clips whose files are missing) instead of raising.
    Returns:
      the expected keys that have no map, sorted (empty unless `allow_missing`).
    Raises:
      MediaError: a key that no pair has, or (without `allow_missing`) a pair without a
        map; the message names them.
    """
    expected = set(expected)
    extra = set(maps) - expected
    if extra:
        raise MediaError(
            path, f"{len(extra)} map(s) for pairs the protocol does not score: {listed(extra)}"
        )
    missing = expected - set(maps)
    if missing and not allow_missing:
        raise MediaError(
            path,
            f"no map for {len(missing)} of {len(expected)} pairs: {listed(missing)} "
            "(--allow_missing leaves them out and counts them)",
        )
    return sorted(missing)
