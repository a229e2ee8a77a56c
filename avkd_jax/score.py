"""Scores anyone's localisation maps under the field's protocols, as `--mode=eval` does.

python -m avkd_jax.score --protocol=vggss --maps=maps.npz --annotations=vggss.json \\
    --test_list=vggss_test.csv --out=scores.json
python -m avkd_jax.score --protocol=flickr --maps=maps.npz --annotations=Annotations/ \\
    --test_list=flickr_test.csv --out=scores.json

`maps.npz` holds one 2-D map per pair, of any size (7×7 similarities, or already 224×224),
keyed `<id>` (a clip with its own sound) or `<image id>__<audio id>` (a mismatched pair);
docs/protocols/ describes each protocol and what its maps must hold.
"""

from __future__ import annotations

import json
import math
import os
import sys

from absl import app, flags

from avkd_jax import files, terminal
from avkd_jax.eval import maps_file, scoring

FLAGS = flags.FLAGS
# The extended protocols' size subsets: in scores.json, not on the terminal.
SIZE_SUFFIXES = ("_small", "_medium", "_large", "_huge")
flags.DEFINE_string("protocol", None, "One of: " + ", ".join(scoring.known()) + ".")
flags.DEFINE_string("maps", None, "The .npz of maps, one per pair.")
flags.DEFINE_string(
    "annotations", None, "Flickr's Annotations/ folder, vggss.json, or the IS3 json."
)
flags.DEFINE_string(
    "test_list", None, "The test ids: flickr_test.csv, vggss_test.csv, vggss_heard_test.csv, ..."
)
flags.DEFINE_string("negatives", None, "The extended protocols' *_test_plus_silent.csv.")
flags.DEFINE_float(
    "tau", 0.03, "The τ of the maps' S/τ (the extended and negative-audio protocols read it)."
)
flags.DEFINE_bool(
    "first_box_only", False, "VGG-SS: each entry's first box only (as the paper's authors)."
)
flags.DEFINE_bool(
    "allow_missing", False, "Leave out pairs without a map and ids without an annotation, counted."
)
flags.DEFINE_string("out", None, "Where to write scores.json (default: print only).")
flags.mark_flags_as_required(["protocol", "maps", "annotations"])


def _json_safe(value):
    """NaN (a metric over an empty subset) as null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def run(argv_flags=FLAGS) -> dict:
    """Reads, scores and (with --out) writes; returns the scores."""
    f = argv_flags
    pairs = scoring.read_pairs(
        f.protocol, f.annotations, f.test_list, f.negatives, f.first_box_only
    )
    maps = maps_file.read_maps(f.maps)
    scores = scoring.score(f.protocol, maps, pairs, f.maps, f.tau, f.allow_missing)
    if f.out:
        files.write_text(f.out, json.dumps(_json_safe(scores), indent=1) + "\n")
    return scores


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    terminal.setup()
    terminal.attach_log_file(None)
    try:
        scores = run()
    except ValueError as e:  # every bad-input error of errors.py is one
        sys.exit(f"error: {e}")
    missing = scores["missing"]
    shown = {k: v for k, v in scores["metrics"].items() if not k.endswith(SIZE_SUFFIXES)}
    line = ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
    )
    print(f"{scores['protocol']}: {scores['n_pairs']} pairs scored: {line}")
    if missing["maps"] or missing["annotations"]:
        print(
            f"left out: {len(missing['maps'])} pair(s) without a map, "
            f"{len(missing['annotations'])} id(s) without an annotation"
        )
    if FLAGS.out:
        print(f"wrote {os.path.abspath(FLAGS.out)}")


if __name__ == "__main__":
    app.run(main)
