"""Scores a maps file (`maps_file`) under a named protocol: the pairs each protocol scores,
their ground truth (`annotations`), and the same per-pair scoring `--mode=eval` uses.

`score(...)` is what `python -m avkd_jax.score` runs; docs/protocols/ describes each protocol.
Every map in the file is S/τ (`maps_file`); a protocol that reads the cosine similarity S
itself (negative audio) multiplies by τ.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avkd_jax.errors import MediaError
from avkd_jax.eval import annotations, extended, is3, maps_file, negative_audio, protocol

STUDENT = "maps"
# Maps upsampled and normalised together, to keep memory small on big test sets.
CHUNK = 256
LVS, EXTENDED, IS3, NEGATIVE_AUDIO = "lvs", "extended", "is3", "negative_audio"


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A protocol the scorer knows.

    Attributes:
      family: LVS (LVS / EZ-VSL), EXTENDED (SLAVC), IS3 or NEGATIVE_AUDIO.
      fmt: the annotations' box format, 'flickr' or 'vggss' (None for IS3).
    """

    family: str
    fmt: str | None


PROTOCOLS = {
    "flickr": Protocol(LVS, annotations.FLICKR),
    "vggss": Protocol(LVS, annotations.VGGSS),
    "extended_flickr": Protocol(EXTENDED, annotations.FLICKR),
    "extended_vggss": Protocol(EXTENDED, annotations.VGGSS),
    "is3": Protocol(IS3, None),
    "negative_audio_flickr": Protocol(NEGATIVE_AUDIO, annotations.FLICKR),
    "negative_audio_vggss": Protocol(NEGATIVE_AUDIO, annotations.VGGSS),
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
      truth: key → `annotations.Truth` of a positive (IS3: the entry of `is3.load_is3`),
        or None for a negative pair (negative audio: the kind, 'silence' or 'noise').
      unannotated: test ids without an annotation (left out with `allow_missing`).
      ids: the test ids (negative audio: the images whose off-screen pair is looked for).
    """

    truth: dict
    unannotated: list
    ids: list = dataclasses.field(default_factory=list)


def _test_truth(p: Protocol, annotation_path, test_list, first_box_only):
    ids = annotations.read_test_ids(test_list)
    if p.fmt == annotations.FLICKR:
        if first_box_only:
            raise ValueError("--first_box_only applies to VGG-SS's boxes only")
        truth, unannotated = annotations.flickr_truth(annotation_path, ids)
    else:
        truth, unannotated = annotations.vggss_truth(annotation_path, ids, first_box_only)
    return ids, dict(truth), unannotated


def read_pairs(
    name: str, annotation_path, test_list=None, negatives=None, first_box_only: bool = False
) -> Pairs:
    """The pairs of protocol `name`: the test list's ids with their ground truth; for the
    extended protocols also the negatives' pairs, for negative audio each image's silence
    and noise pairs (its off-screen pair is found among the maps), for IS3 every entry.

    Raises:
      MediaError: an unreadable list or annotation file; ValueError: a missing argument.
    """
    p = get(name)
    if p.family == IS3:
        if test_list is not None or negatives is not None or first_box_only:
            raise ValueError("protocol 'is3' reads --annotations only (the IS3 json)")
        entries = is3.load_is3(annotation_path)
        return Pairs(dict(entries), [], list(entries))
    if test_list is None:
        raise ValueError(f"--test_list is required for protocol {name!r}")
    ids, truth, unannotated = _test_truth(p, annotation_path, test_list, first_box_only)
    if p.family == NEGATIVE_AUDIO:
        for id_ in ids:
            for kind in ("silence", "noise"):
                truth[negative_audio.pair_key(id_, kind)] = kind
    if (p.family == EXTENDED) != (negatives is not None):
        raise ValueError(
            f"--negatives (a *_plus_silent.csv) is required for {name!r}"
            if p.family == EXTENDED
            else f"--negatives does not apply to protocol {name!r}"
        )
    for image, audio in annotations.read_negatives(negatives) if negatives else ():
        key = annotations.pair_key(image, audio)
        if key in truth:
            what = "a positive" if truth[key] is not None else "another negative pair"
            raise MediaError(negatives, f"the pair ({image}, {audio}) has the key {key} of {what}")
        truth[key] = None
    return Pairs(truth, unannotated, ids)


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


def score_extended(maps: dict, truth: dict, tau: float) -> tuple[dict, dict]:
    """SLAVC's extended protocol (`extended.ExtendedScores`) on S/τ maps of any size."""
    acc = extended.ExtendedScores(tau=tau)
    for key, t in truth.items():
        if key in maps:
            acc.add(key, maps[key], None if t is None else t.gt, 0 if t is None else t.n_boxes)
    return acc.result(), acc.per_sample()


def score_is3(maps: dict, entries: dict) -> tuple[dict, dict]:
    """IS3 (`is3.IS3Scores`) on maps of any size, keyed by the image's stem."""
    acc = is3.IS3Scores(entries)
    for stem, entry in entries.items():
        if stem in maps:
            acc.add(stem, maps[stem], entry["box"])
    return acc.result(), acc.per_sample()


def offscreen_pairs(maps: dict, pairs: Pairs, maps_path) -> dict:
    """Negative audio: image id → the key of its off-screen map, read from the maps' keys
    (`<image id>__<audio id>`, the audio another test clip's).

    Raises:
      MediaError: an image with two off-screen maps.
    """
    known, found = set(pairs.ids), {}
    for key in maps:
        if key in pairs.truth:
            continue
        try:
            image, kind, _ = negative_audio.parse_pair_key(key, known)
        except ValueError:
            continue  # Not a pair of this protocol: `match_keys` names it.
        if kind == "offscreen":
            if image in found:
                raise MediaError(
                    maps_path, f"two off-screen maps for {image}: {found[image]} and {key}"
                )
            found[image] = key
    return found


def score_negative_audio(maps: dict, pairs: Pairs, found: dict, tau: float) -> tuple:
    """Juanola et al.'s negative audio (`negative_audio.NegativeAudioScores`) on S/τ maps:
    each image's own sound (its positive), silence, noise and an off-screen clip's sound."""
    acc = negative_audio.NegativeAudioScores()
    for key, t in pairs.truth.items():
        if key not in maps:
            continue
        if isinstance(t, annotations.Truth):
            acc.add_positive(key, maps[key] * tau, t.gt)
        else:
            image, kind, _ = negative_audio.parse_pair_key(key, set(pairs.ids))
            acc.add(image, kind, maps[key] * tau)
    for image, key in found.items():
        acc.add(image, "offscreen", maps[key] * tau, key[len(image) + len("__") :])
    return acc.result(), acc.per_sample()


def _of_any(key: str, ids) -> bool:
    """Whether `key` is a pair of one of `ids`' images."""
    return key in ids or any(key.startswith(i + annotations.PAIR_SEPARATOR) for i in ids)


def score(
    name: str,
    maps: dict,
    pairs: Pairs,
    maps_path: str = "maps.npz",
    tau: float = extended.TAU,
    allow_missing: bool = False,
) -> dict:
    """Scores `maps` (key → `[h, w]` S/τ, `maps_file.read_maps`) under protocol `name`.

    Returns:
      {'protocol', 'n_pairs' (scored), 'metrics': {name: value in percent, counts},
       'missing': {'maps': [keys], 'annotations': [ids]}, 'per_pair': {key: ...}}.
    Raises:
      MediaError: keys that match no pair, or (without `allow_missing`) pairs without a
        map or test ids without an annotation.
    """
    p = get(name)
    if not tau > 0:
        raise ValueError(f"--tau must be positive, got {tau}")
    if pairs.unannotated and not allow_missing:
        raise MediaError(
            maps_path,
            f"{len(pairs.unannotated)} test id(s) have no annotation: "
            f"{maps_file.listed(pairs.unannotated)} (--allow_missing leaves them out)",
        )
    unannotated = set(pairs.unannotated)
    maps = {k: v for k, v in maps.items() if not _of_any(k, unannotated)}
    expected = set(pairs.truth)
    found = {}
    if p.family == NEGATIVE_AUDIO:
        found = offscreen_pairs(maps, pairs, maps_path)
        expected |= set(found.values())
        lacking = [i for i in pairs.ids if i in pairs.truth and i not in found]
        if lacking and not allow_missing:
            raise MediaError(
                maps_path,
                f"no off-screen map (<image id>__<audio id>) for {len(lacking)} image(s): "
                f"{maps_file.listed(lacking)}",
            )
    missing = maps_file.match_keys(maps, expected, maps_path, allow_missing)
    if p.family == LVS:
        metrics, per_pair = score_lvs(maps, pairs.truth)
    elif p.family == EXTENDED:
        metrics, per_pair = score_extended(maps, pairs.truth, tau)
    elif p.family == IS3:
        metrics, per_pair = score_is3(maps, pairs.truth)
    else:
        metrics, per_pair = score_negative_audio(maps, pairs, found, tau)
    return {
        "protocol": name,
        "n_pairs": len(expected & set(maps)),
        "metrics": metrics,
        "missing": {"maps": missing, "annotations": sorted(pairs.unannotated)},
        "per_pair": per_pair,
    }
