"""Where a config's raw data is: roots, list files, annotations, and which ids each split gets.

The builders, the training-start overlap check and the data report all start here, so
they agree on every path and every id. Nothing here reads media or imports TensorFlow.

Config fields read (see `default_config.base_config`): `dataset`, `manual_dir` (raw
root), `test_manual_dir` (raw root of the test split, default `manual_dir`),
`metadata_dir` (lists and vggss.json, default `<manual_dir>/metadata`),
`annotation_dir` (Flickr XML, default `<test root>/Annotations`),
`dataset_kwargs.{train_list, test_list, vggss_json}` (a path, or a bare file name looked
up in the metadata folder), `allow_test_overlap`, `eval_sets`, `eval_manual_dirs`,
`eval_lists` (only where a config defines it: configs/vggs_heard.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from absl import logging

from avkd_jax.datasets import flickr_layout, raw_examples, vggss_annotations
from avkd_jax.errors import MediaError

FLICKR, VGGSOUND, SYNTHETIC = "flickr_soundnet", "vggsound", "synthetic_av"
REAL_DATASETS = (FLICKR, VGGSOUND)

# Evaluation sets: name → (dataset, ground-truth format of docs/design.md, Evaluation).
EVAL_SETS = {
    "flickr_test": (FLICKR, "flickr"),
    "vggss_test": (VGGSOUND, "vggss"),
    # EZ-VSL's open set: VGG-SS test clips of the 110 classes of vggss_heard.txt, and of
    # 110 others.
    "vggss_heard_test": (VGGSOUND, "vggss"),
    "vggss_unheard_test": (VGGSOUND, "vggss"),
    "synthetic_test": (SYNTHETIC, "flickr"),
}
OWN_EVAL_SET = {FLICKR: "flickr_test", VGGSOUND: "vggss_test", SYNTHETIC: "synthetic_test"}
# Each real set's id list (a set other than the training dataset's own, whose list is
# config.dataset_kwargs.test_list; config.eval_lists.<name> where a config has it).
EVAL_LISTS = {
    "flickr_test": "flickr_test.csv",
    "vggss_test": "vggss_test.csv",
    "vggss_heard_test": "vggss_heard_test.csv",
    "vggss_unheard_test": "vggss_unheard_test.csv",
}
DEFAULT_TEST_LIST = {FLICKR: EVAL_LISTS["flickr_test"], VGGSOUND: EVAL_LISTS["vggss_test"]}
# Sets whose clips are VGG-SS test clips: a vggss_test root serves them too.
SAME_CLIPS_AS = {"vggss_heard_test": "vggss_test", "vggss_unheard_test": "vggss_test"}
BOX_FORMAT = {FLICKR: "flickr", VGGSOUND: "vggss"}

# Bump when what a builder writes for the same inputs changes: it renames every config.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class SplitSource:
    """One split's raw clips.

    Attributes:
      split: 'train' or 'test'.
      root: raw root holding frames/, audio/ and/or video/.
      list_path: the id list file (bare names are looked up in config.metadata_dir, then
        `<manual_dir>/metadata`, then `<test root>/metadata`).
      listed: ids of the list, deduplicated, in file order.
      keyframes: id → frame index (test csv's second column), used for video clips.
      box_format: None (train), 'flickr' or 'vggss'.
      annotation: 'flickr': the Annotations folder; 'vggss': the json file.
      dropped: listed ids left out of the split (test ids in a train list).
    """

    split: str
    root: str
    list_path: str
    listed: tuple = dataclasses.field(repr=False)
    keyframes: dict = dataclasses.field(default_factory=dict, repr=False)
    box_format: str | None = None
    annotation: str | None = None
    dropped: frozenset = dataclasses.field(default=frozenset(), repr=False)

    @property
    def ids(self) -> list[str]:
        """The ids the split is built from: listed minus dropped, in list order."""
        return [i for i in self.listed if i not in self.dropped]


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSource:
    """A real dataset's raw splits: `train` is None for a test-only (evaluation) build."""

    dataset: str
    train: SplitSource | None
    test: SplitSource

    def splits(self) -> dict[str, SplitSource]:
        out = {"train": self.train} if self.train is not None else {}
        out["test"] = self.test
        return out

    def config_name(self, sample_rate: int, audio_seconds: float) -> str:
        """`<train list stem>-<test list stem>-<digest>`: a new name whenever a list, the
        excluded ids, the annotations file or the audio format changes, so two different
        inputs never share prepared shards."""
        h = hashlib.sha256()

        def add(x):
            h.update(json.dumps(x, sort_keys=True).encode())
            h.update(b"\0")

        add([FORMAT_VERSION, self.dataset, sample_rate, float(audio_seconds)])
        for name, s in self.splits().items():
            add([name, s.box_format, list(s.listed), s.keyframes, sorted(s.dropped)])
            if s.box_format == "vggss":
                with open(s.annotation, "rb") as f:
                    add(hashlib.sha256(f.read()).hexdigest())
        stems = [_stem(s.list_path) for s in self.splits().values()]
        return "-".join(stems + [h.hexdigest()[:10]])


def _stem(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem)


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def resolve_file(name: str, dirs: list[str], field: str) -> str:
    """A path as given, or a bare file name looked up in `dirs` (first hit).

    Raises:
      FileNotFoundError: naming the config `field`, the name and every place looked in.
    """
    if os.path.basename(name) != name:
        path = _abs(name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{field}={name!r}: {path} does not exist.")
        return path
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path
    looked = ", ".join(dirs) or "(no folder: set config.metadata_dir or config.manual_dir)"
    raise FileNotFoundError(
        f"{field}={name!r} not found in {looked}. Put the EZ-VSL metadata files there, "
        "or set config.metadata_dir, or give the list as a path (docs/data.md, Lists)."
    )


def _metadata_dirs(config, *roots) -> list[str]:
    dirs = []
    if config.get("metadata_dir"):
        dirs.append(_abs(config.metadata_dir))
    for root in roots:
        if root:
            dirs.append(os.path.join(_abs(root), "metadata"))
    return list(dict.fromkeys(dirs))


def _test_split(config, dataset: str, root: str, list_name: str, field: str, dirs, ann_dir):
    path = resolve_file(list_name, dirs, field)
    listed = tuple(flickr_layout.read_id_list(path))
    keyframes = flickr_layout.read_keyframes(path) if path.lower().endswith(".csv") else {}
    if dataset == FLICKR:
        annotation = _abs(ann_dir) if ann_dir else os.path.join(root, "Annotations")
    else:
        json_name = config.dataset_kwargs.get("vggss_json") or "vggss.json"
        annotation = resolve_file(json_name, dirs, "config.dataset_kwargs.vggss_json")
    return SplitSource(
        "test", root, path, listed, keyframes, BOX_FORMAT[dataset], annotation, frozenset()
    )


def _own_roots(config):
    """(train root, test root, metadata folders) of the training dataset."""
    root = _abs(config.manual_dir)
    test_root = _abs(config.get("test_manual_dir") or config.manual_dir)
    return root, test_root, _metadata_dirs(config, root, test_root)


def _own_test_list(config) -> str:
    return config.dataset_kwargs.get("test_list") or DEFAULT_TEST_LIST[config.dataset]


def dataset_source(config) -> DatasetSource:
    """The training dataset's raw splits: train (minus test ids unless
    `allow_test_overlap`) and its own test set.

    Raises:
      ValueError: no `manual_dir`, or not a real dataset.
      FileNotFoundError: a list or annotation file that is not where the config says.
    """
    dataset = config.dataset
    if dataset not in REAL_DATASETS:
        raise ValueError(f"{dataset!r} is not a real dataset ({REAL_DATASETS})")
    if not config.get("manual_dir"):
        raise ValueError(f"The {dataset} dataset needs config.manual_dir (its raw root).")
    root, test_root, dirs = _own_roots(config)
    kw = config.dataset_kwargs
    train_path = resolve_file(kw.train_list, dirs, "config.dataset_kwargs.train_list")
    test = _test_split(
        config,
        dataset,
        test_root,
        _own_test_list(config),
        "config.dataset_kwargs.test_list",
        dirs,
        config.get("annotation_dir"),
    )
    listed = tuple(flickr_layout.read_id_list(train_path))
    dropped = frozenset()
    if not config.get("allow_test_overlap"):
        test_ids = set(test.listed) | _other_eval_ids(config, dataset)
        dropped = frozenset(i for i in listed if i in test_ids)
        if dropped:
            logging.warning(
                "%s: %d of the %d ids of %s are test ids: left out of the train split "
                "(config.allow_test_overlap=True keeps them).",
                dataset,
                len(dropped),
                len(listed),
                train_path,
            )
    train = SplitSource("train", root, train_path, listed, dropped=dropped)
    return DatasetSource(dataset, train, test)


def eval_set_names(config) -> list[str]:
    """`config.eval_sets`, or the training dataset's own test set when empty."""
    names = list(config.get("eval_sets") or ()) or [OWN_EVAL_SET[config.dataset]]
    for name in names:
        if name not in EVAL_SETS:
            raise ValueError(f"Unknown eval set {name!r} in config.eval_sets: {list(EVAL_SETS)}")
    return list(dict.fromkeys(names))


def is_own_eval_set(config, name: str) -> bool:
    """Whether evaluation set `name` is the training dataset's own test split."""
    return OWN_EVAL_SET.get(config.dataset) == name


def _given_root(config, name: str) -> str | None:
    """config.eval_manual_dirs.<name>, else (a set of another dataset than the training
    one) that of the set with the same clips (`SAME_CLIPS_AS`)."""
    dirs = config.get("eval_manual_dirs") or {}
    if not hasattr(dirs, "get"):
        return None
    root = dirs.get(name)
    if not root and name in SAME_CLIPS_AS and EVAL_SETS[name][0] != config.dataset:
        root = dirs.get(SAME_CLIPS_AS[name])
    return root or None


def eval_root(config, name: str) -> str | None:
    """The raw root of evaluation set `name` (not the own one): config.eval_manual_dirs.
    <name>, else the training dataset's test root when it is the set's dataset, else the
    vggss_test root for a set of its clips (`SAME_CLIPS_AS`); None when none is given."""
    root = _given_root(config, name)
    if root:
        return _abs(root)
    return _own_roots(config)[1] if EVAL_SETS[name][0] == config.dataset else None


def eval_manual_dir(config, name: str) -> str:
    """`eval_root`, or ValueError naming the field to set."""
    root = eval_root(config, name)
    if not root:
        alias = f" (or .{SAME_CLIPS_AS[name]})" if name in SAME_CLIPS_AS else ""
        raise ValueError(
            f"Evaluating on {name!r} needs its raw root: set config.eval_manual_dirs.{name}"
            f"{alias} (e.g. --config.eval_manual_dirs.{SAME_CLIPS_AS.get(name, name)}="
            f"/path/to/{EVAL_SETS[name][0]})."
        )
    return root


def _eval_metadata_dirs(config, name: str) -> list[str]:
    roots = [_given_root(config, name), config.get("manual_dir")]
    if EVAL_SETS[name][0] == config.dataset:
        roots.append(config.get("test_manual_dir") or config.manual_dir)
    return _metadata_dirs(config, *roots)


def _eval_list(config, name: str) -> tuple[str, str]:
    """(the list of evaluation set `name`, not the own one, as given; the field naming it)."""
    given = config.get("eval_lists") or {}
    if hasattr(given, "get") and name in given:
        return given.get(name) or EVAL_LISTS[name], f"config.eval_lists.{name}"
    return EVAL_LISTS[name], f"the {name} list"


def eval_set_source(config, name: str) -> DatasetSource:
    """The test-only source of evaluation set `name` (not the training dataset's own).

    Its list is `EVAL_LISTS[name]` (or config.eval_lists.<name>), looked up in
    config.metadata_dir, then `<its root>/metadata`, then `<manual_dir>/metadata` (and
    `<test_manual_dir>/metadata` for a set of the training dataset).
    """
    dataset = EVAL_SETS[name][0]
    root = eval_manual_dir(config, name)
    dirs = _eval_metadata_dirs(config, name)
    list_name, field = _eval_list(config, name)
    test = _test_split(config, dataset, root, list_name, field, dirs, None)
    return DatasetSource(dataset, None, test)


def eval_list_path(config, name: str) -> str:
    """The id list of evaluation set `name`: the training dataset's own test list for its
    own set, else the set's list looked up where `eval_set_source` looks (no raw root
    needed).

    Raises:
      FileNotFoundError: not found there, naming the field.
    """
    if is_own_eval_set(config, name):
        field = "config.dataset_kwargs.test_list"
        return resolve_file(_own_test_list(config), _own_roots(config)[2], field)
    list_name, field = _eval_list(config, name)
    return resolve_file(list_name, _eval_metadata_dirs(config, name), field)


def _other_eval_ids(config, dataset: str) -> set[str]:
    """Ids of the lists of the eval sets other than the own one: a missing list of the
    training dataset's is an error, another dataset's is skipped with a warning (its
    folders may be set only when it is evaluated)."""
    ids: set[str] = set()
    for name in config.get("eval_sets") or ():
        if name not in EVAL_SETS or EVAL_SETS[name][0] == SYNTHETIC:
            continue
        if is_own_eval_set(config, name):
            continue
        try:
            ids |= set(flickr_layout.read_id_list(eval_list_path(config, name)))
        except FileNotFoundError as e:
            if EVAL_SETS[name][0] == dataset:
                raise
            logging.warning("%s: its ids are not left out of the train split: %s", name, e)
    return ids


def split_tasks(source: SplitSource, sample_rate: int, audio_seconds: float):
    """The read tasks of a split, and the clips that fail before any file is opened.

    Returns:
      (tasks: list of raw_examples.ExampleTask in list order,
       prefailed: list of (id, file, reason) for clips whose annotation entry is
         missing or malformed,
       notes: list of (where, reason) for annotation problems tied to no clip).
    Raises:
      MediaError: the annotations file itself is unreadable.
    """
    common = {"sample_rate": sample_rate, "audio_seconds": audio_seconds}
    tasks, prefailed, notes = [], [], []
    if source.box_format is None:
        tasks = [raw_examples.ExampleTask(i, source.root, **common) for i in source.ids]
    elif source.box_format == "flickr":
        for i in source.ids:
            xml = os.path.join(source.annotation, f"{i}.xml")
            tasks.append(
                raw_examples.ExampleTask(
                    i,
                    source.root,
                    keyframe=source.keyframes.get(i),
                    box_format="flickr",
                    annotation=xml,
                    **common,
                )
            )
    else:
        ann = vggss_annotations.read_vggss_json(source.annotation)
        notes = list(ann.notes)
        for i in source.ids:
            if i in ann.malformed:
                prefailed.append((i, ann.path, ann.malformed[i]))
            elif i not in ann.boxes:
                prefailed.append((i, ann.path, f"no entry for {i}"))
            else:
                tasks.append(
                    raw_examples.ExampleTask(
                        i,
                        source.root,
                        keyframe=source.keyframes.get(i),
                        box_format="vggss",
                        annotation=ann.path,
                        boxes=ann.boxes[i],
                        **common,
                    )
                )
    return tasks, prefailed, notes


__all__ = [
    "BOX_FORMAT",
    "DEFAULT_TEST_LIST",
    "EVAL_LISTS",
    "EVAL_SETS",
    "FLICKR",
    "OWN_EVAL_SET",
    "SYNTHETIC",
    "VGGSOUND",
    "DatasetSource",
    "MediaError",
    "SplitSource",
    "dataset_source",
    "eval_list_path",
    "eval_manual_dir",
    "eval_root",
    "eval_set_names",
    "eval_set_source",
    "is_own_eval_set",
    "resolve_file",
    "split_tasks",
]
