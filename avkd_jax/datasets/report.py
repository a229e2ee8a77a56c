"""What a config's raw data holds, before (or after) building it.

    python -m avkd_jax.datasets.report --config=configs/vggs144k.py \
        --config.manual_dir=/data/vggsound [--decode=false] [--output_dir=DIR]

Per split (train, test, and each evaluation set of another dataset with a raw root): how
many ids the list has, how many are left out as test ids, how many have their files,
which are missing (written to `missing-<split>.tsv`), which fail to decode and why
(`failed-<split>.tsv`, with `--decode`), annotation problems; then the overlap of the
train list with every evaluation set's list (`overlap-<set>.txt`). Nothing is built:
this is a dry scan of the raw files through the same reader the builders use. If the
dataset is already prepared, the clips its build skipped are counted too.
"""

from __future__ import annotations

import collections
import os

from absl import app, flags
from ml_collections import config_flags

from avkd_jax import errors, files, terminal
from avkd_jax.datasets import av_builder, flickr_layout, overlap, raw_examples, sources

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
flags.DEFINE_string(
    "output_dir", None, "Where the id files go (default: data_report/<builder config name>)."
)
flags.DEFINE_bool("decode", True, "Decode every found clip (slow); false: only look for files.")
flags.DEFINE_integer("workers", 0, "Decoding threads; 0: config.prepare_workers, else per CPU.")

_SHOWN = 10  # Failures printed per split; all are in the files.


def _tsv(rows) -> str:
    return "".join("\t".join(str(c).replace("\t", " ") for c in r) + "\n" for r in rows)


def scan_split(source: sources.SplitSource, sample_rate, audio_seconds, decode=True, workers=0):
    """Looks for (and with `decode` reads) every clip of a split.

    Returns:
      {'listed', 'left_out': ids dropped as test ids, 'to_build', 'found',
       'missing': [(id, path, reason)], 'failed': [(id, file, reason)] (annotation
       entries included), 'boxes_dropped': [(id, file, reason)], 'notes': [(where, reason)],
       'decoded': whether clips were read}.
    """
    tasks, prefailed, notes = sources.split_tasks(source, sample_rate, audio_seconds)
    missing, present = [], []
    for task in terminal.progress_bar(
        tasks, desc=f"{source.split}: looking for files", unit="clip"
    ):
        gaps = raw_examples.missing_files(task)
        if gaps:
            missing += [(task.example_id, path, reason) for path, reason in gaps]
        else:
            present.append(task)
    failed = list(prefailed)
    boxes_dropped = []
    if decode:
        results = raw_examples.read_many(
            present, raw_examples.default_workers(workers, len(present))
        )
        for task, result in terminal.progress_bar(
            results, total=len(present), desc=f"{source.split}: decoding", unit="clip"
        ):
            if isinstance(result, errors.MediaError):
                failed.append((task.example_id, result.path, result.reason))
            else:
                boxes_dropped += [(task.example_id, f, r) for f, r in result["notes"]]
    return {
        "listed": len(source.listed),
        "left_out": sorted(source.dropped),
        "to_build": len(source.ids),
        "found": len(present),
        "missing": missing,
        "failed": failed,
        "boxes_dropped": boxes_dropped,
        "notes": list(notes),
        "decoded": decode,
    }


def _split_sources(config) -> dict[str, sources.SplitSource]:
    """split name → source: the training dataset's splits, then every other evaluation set
    whose raw root is known (`sources.eval_root`)."""
    own = sources.dataset_source(config)
    out = dict(own.splits())
    for name in sources.eval_set_names(config):
        if sources.is_own_eval_set(config, name) or sources.EVAL_SETS[name][0] == sources.SYNTHETIC:
            continue
        if sources.eval_root(config, name):
            out[name] = sources.eval_set_source(config, name).test
    return out


def eval_overlaps(config, train_list_ids) -> dict[str, dict]:
    """name → {'list', 'size', 'overlap': test ids in the train list} for every eval set
    whose list is found; {'error': why} otherwise."""
    out = {}
    for name in sources.eval_set_names(config):
        if sources.EVAL_SETS[name][0] == sources.SYNTHETIC:
            continue
        try:
            path = sources.eval_list_path(config, name)
        except FileNotFoundError as e:
            out[name] = {"error": str(e)}
            continue
        ids = flickr_layout.read_id_list(path)
        out[name] = {
            "list": path,
            "size": len(ids),
            "overlap": overlap.list_overlap(train_list_ids, ids),
        }
    return out


def _prepared_skips(config) -> tuple[str, dict]:
    """(the prepared dataset folder, split → its skipped rows), {} if not prepared."""
    from avkd_jax import datasets  # pylint: disable=g-import-not-at-top

    if not config.get("data_dir"):
        return "", {}
    builder = datasets.get_builder(config)
    if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        return builder.data_dir, {}
    skips = {}
    for split in ("train", "test"):
        rows = av_builder.read_skipped(builder.data_dir, split)
        if rows is not None:
            skips[split] = rows
    return builder.data_dir, skips


def build_report(config, output_dir: str, decode=True, workers=0) -> tuple[dict, str]:
    """Scans the config's raw data, writes the id files in `output_dir`.

    Returns:
      (the numbers as a dict: {'splits': {split: scan_split(...)}, 'overlaps':
       eval_overlaps(...), 'prepared': folder, 'prepared_skips': {split: rows}},
       the printed text).
    """
    os.makedirs(output_dir, exist_ok=True)
    workers = workers or config.get("prepare_workers") or 0
    split_sources = _split_sources(config)
    own = sources.dataset_source(config)
    lines = [f"Data report: {config.dataset} (files in {output_dir})"]
    splits = {}
    for split, src in split_sources.items():
        r = scan_split(src, config.sample_rate, config.audio_seconds, decode, workers)
        splits[split] = r
        lines.append("")
        lines.append(f"{split}: {src.list_path} lists {r['listed']} ids; raw root {src.root}")
        if r["left_out"]:
            lines.append(
                f"  {len(r['left_out'])} are test ids, left out of training "
                "(config.allow_test_overlap=True keeps them)"
            )
        lines.append(f"  {r['found']} of {r['to_build']} have their files")
        missing_ids = sorted({i for i, _, _ in r["missing"]})
        if missing_ids:
            path = os.path.join(output_dir, f"missing-{split}.tsv")
            files.write_text(path, "id\tlooked for\treason\n" + _tsv(r["missing"]))
            lines.append(f"  {len(missing_ids)} missing: {path}")
        if r["failed"]:
            path = os.path.join(output_dir, f"failed-{split}.tsv")
            files.write_text(path, "id\tfile\treason\n" + _tsv(r["failed"]))
            what = (
                "failed to decode or have no usable annotation"
                if decode
                else "have no usable annotation"
            )
            lines.append(f"  {len(r['failed'])} {what}: {path}")
            reasons = collections.Counter(reason.split(" (")[0] for _, _, reason in r["failed"])
            for reason, n in reasons.most_common(_SHOWN):
                lines.append(f"    {n} × {reason}")
            for i, f, reason in r["failed"][:_SHOWN]:
                lines.append(f"    {i}: {f}: {reason}")
        elif decode:
            lines.append(f"  all {r['found']} found clips decode")
        else:
            lines.append("  not decoded (--decode=false)")
        for i, f, reason in r["boxes_dropped"]:
            lines.append(f"  box dropped: {i}: {f}: {reason}")
        for where, reason in r["notes"]:
            lines.append(f"  annotation note: {where}: {reason}")
    prepared, skips = _prepared_skips(config)
    if skips:
        lines += ["", f"Prepared dataset {prepared}:"]
        for split, rows in skips.items():
            counts = collections.Counter(action for _, _, action, _ in rows)
            lines.append(
                f"  {split}: {counts.get('skipped', 0)} clips skipped, "
                f"{counts.get('box dropped', 0)} boxes dropped "
                f"({av_builder.skipped_path(prepared, split)})"
            )
    elif prepared:
        lines += ["", f"Not prepared yet: {prepared}"]
    train_ids = own.train.listed
    overlaps = eval_overlaps(config, train_ids)
    lines += ["", f"Overlap of the train list ({own.train.list_path}) with the evaluation sets:"]
    for name, o in overlaps.items():
        if "error" in o:
            lines.append(f"  {name}: list not found ({o['error']})")
            continue
        path = os.path.join(output_dir, f"overlap-{name}.txt")
        files.write_text(path, "".join(f"{i}\n" for i in o["overlap"]))
        example = f" (e.g. {', '.join(o['overlap'][:3])}; all in {path})" if o["overlap"] else ""
        lines.append(
            f"  {name}: {len(o['overlap'])} of its {o['size']} ids are in the train list{example}"
        )
    report = {"splits": splits, "overlaps": overlaps, "prepared": prepared, "prepared_skips": skips}
    return report, "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if config.dataset not in sources.REAL_DATASETS:
        raise app.UsageError(
            f"--config must train on {sources.REAL_DATASETS}, not {config.dataset!r}"
        )
    try:
        output_dir = FLAGS.output_dir
        if not output_dir:
            source = sources.dataset_source(config)
            name = source.config_name(config.sample_rate, config.audio_seconds)
            output_dir = os.path.join("data_report", config.dataset, name)
        _, text = build_report(config, output_dir, FLAGS.decode, FLAGS.workers)
    except (FileNotFoundError, ValueError) as e:  # MediaError is a ValueError.
        raise SystemExit(f"{type(e).__name__}: {e}") from None
    print(text, end="", flush=True)


if __name__ == "__main__":
    app.run(main)
