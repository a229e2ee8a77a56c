"""Scores a maps file (`maps_file`) under a named protocol: the pairs each protocol scores,
their ground truth (`annotations`), and the same accumulators `--mode=eval` feeds.

`score(...)` is what `python -m avkd_jax.score` runs; docs/protocols/ describes each protocol.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avkd_jax.errors import MediaError
from avkd_jax.eval import annotations, maps_file, protocol

STUDENT = "maps"
# Maps upsampled and normalised together, to keep memory small on big test sets.
CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A protocol the scorer knows.

    Attributes:
      family: 'lvs' (LVS / EZ-VSL), 'extended' (SLAVC) or 'is3'.
      fmt: the annotations' box format, 'flickr' or 'vggss' (None for IS3).
      negatives: whether it scores the `*_plus_silent.csv` pairs too.
    """

    family: str
    fmt: str | None
    negatives: bool = False


PROTOCOLS = {
    "flickr": Protocol("lvs", annotations.FLICKR),
    "vggss": Protocol("lvs", annotations.VGGSS),
}


def known() -> list:
    return sorted(PROTOCOLS)


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"--protocol: unknown protocol {name!r}; known: {', '.join(known())}")
    return PROTOCOLS[name]


@dataclasses.dataclass
class Pairs:
    """The pairs a protocol scores.

    Attributes:
      truth: key → `annotations.Truth` of a positive, or None for a negative pair.
      unannotated: test ids without an annotation (left out with `allow_missing`).
    """

    truth: dict
    unannotated: list


def read_pairs(
    name: str, annotation_path, test_list, negatives=None, first_box_only: bool = False
) -> Pairs:
    """The pairs of protocol `name`: the test list's ids with their ground truth and, for
    the extended protocols, the negatives' pairs.

    Raises:
      MediaError: an unreadable list or annotation file; ValueError: a missing argument.
    """
    p = get(name)
    if test_list is None:
        raise ValueError(f"--test_list is required for protocol {name!r}")
    ids = annotations.read_test_ids(test_list)
    if p.fmt == annotations.FLICKR:
        if first_box_only:
            raise ValueError("--first_box_only applies to VGG-SS's boxes only")
        truth, unannotated = annotations.flickr_truth(annotation_path, ids)
    else:
        truth, unannotated = annotations.vggss_truth(annotation_path, ids, first_box_only)
    truth = dict(truth)
    if p.negatives:
        if negatives is None:
            raise ValueError(f"--negatives (a *_plus_silent.csv) is required for {name!r}")
        for image, audio in annotations.read_negatives(negatives):
            key = annotations.pair_key(image, audio)
            if key in truth:
                raise MediaError(negatives, f"the negative pair {key} is also a positive")
            truth[key] = None
    elif negatives is not None:
        raise ValueError(f"--negatives does not apply to protocol {name!r}")
    return Pairs(truth, unannotated)


def _chunks(keys, maps):
    """Runs of keys whose maps have one shape, at most `CHUNK` long: (keys, `[n, h, w]`)."""
    run: list = []
    for key in keys:
        if run and (len(run) == CHUNK or maps[key].shape != maps[run[0]].shape):
            yield run, np.stack([maps[k] for k in run])
            run = []
        run.append(key)
    if run:
        yield run, np.stack([maps[k] for k in run])


def score_lvs(maps: dict, truth: dict) -> tuple[dict, dict]:
    """The LVS / EZ-VSL protocol on maps of any size (upsampled bilinearly, corner-aligned,
    unless already 224², then min-max normalised: `protocol.protocol_maps`).

    Returns:
      (`protocol.summarize`'s metrics in percent, key → cIoU).
    """
    acc = protocol.Ciou()
    per_pair = {}
    for keys, raw in _chunks([k for k in truth if k in maps], maps):
        for key, pred in zip(keys, protocol.protocol_maps(raw)):
            per_pair[key] = acc.add(STUDENT, pred, truth[key].gt)
    return acc.result()[STUDENT], per_pair


def score(
    name: str,
    maps: dict,
    pairs: Pairs,
    maps_path: str = "maps.npz",
    tau: float = 0.03,
    allow_missing: bool = False,
) -> dict:
    """Scores `maps` (key → `[h, w]`, `maps_file.read_maps`) under protocol `name`.

    Returns:
      {'protocol', 'n_pairs' (scored), 'metrics': {name: value in percent, 'n': ...},
       'missing': {'maps': [keys], 'annotations': [ids]}, 'per_pair': {key: ...}}.
    Raises:
      MediaError: keys that match no pair, or (without `allow_missing`) pairs without a
        map or test ids without an annotation.
    """
    del tau  # Used by the protocols with fixed score bounds.
    p = get(name)
    if pairs.unannotated and not allow_missing:
        raise MediaError(
            maps_path,
            f"{len(pairs.unannotated)} test id(s) have no annotation: "
            f"{maps_file._listed(pairs.unannotated)} (--allow_missing leaves them out)",
        )
    unannotated = set(pairs.unannotated)
    maps = {k: v for k, v in maps.items() if k not in unannotated}
    missing = maps_file.match_keys(maps, pairs.truth, maps_path, allow_missing)
    if p.family == "lvs":
        metrics, per_pair = score_lvs(maps, pairs.truth)
    else:
        raise NotImplementedError(p.family)
    return {
        "protocol": name,
        "n_pairs": len(per_pair),
        "metrics": metrics,
        "missing": {"maps": missing, "annotations": sorted(pairs.unannotated)},
        "per_pair": per_pair,
    }
