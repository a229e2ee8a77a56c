"""The builder writes and the pipeline reads a tiny synthetic world; evaluation reads it."""

import json
import os
import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest
import soundfile as sf

from avkd_jax import datasets, input_pipeline, models, sharding
from avkd_jax.eval import diagnostics, evaluator, protocol


def raw_root(config):
    builder = datasets.get_builder(config)
    return builder, builder.raw_dir()


def xml_boxes(path):
    """Annotator boxes read straight from the XML, independently of flickr_layout."""
    boxes = []
    for bbox in ET.parse(path).getroot().iter("bbox"):
        boxes.append([int(bbox.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")])
    return boxes


def object_at(x, y, objects):
    """The index in a scenes.json object list of the object whose box (pixels of the 256
    frame) holds the point (x, y), the nearest centre among several; -1 for none."""
    held = [
        (np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2), k)
        for k, o in enumerate(objects)
        for x0, y0, x1, y1 in [o["box"]]
        if x0 <= x <= x1 and y0 <= y <= y1
    ]
    return min(held)[1] if held else -1


def test_splits_and_train_batches(tiny):
    builder, _ = raw_root(tiny)
    assert builder.info.splits["train"].num_examples == 48
    assert builder.info.splits["test"].num_examples == 12
    batches = list(input_pipeline.train_dataset(builder, tiny, 0, 8).as_numpy_iterator())
    assert len(batches) == 6
    b = batches[0]
    assert b["image"].shape == (8, 64, 64, 3) and b["image"].dtype == np.uint8
    assert b["audio"].shape == (8, 11025) and b["audio"].dtype == np.int16
    again = list(input_pipeline.train_dataset(builder, tiny, 0, 8).as_numpy_iterator())
    other = list(input_pipeline.train_dataset(builder, tiny, 1, 8).as_numpy_iterator())
    for x, y in zip(batches, again):  # Same (seed, epoch): the same batches, bit for bit.
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["audio"], y["audio"])
    assert not np.array_equal(batches[0]["audio"], other[0]["audio"])


def test_eval_batches_match_raw_files(tiny):
    builder, root = raw_root(tiny)
    rows = []
    for batch in input_pipeline.eval_batches(builder, tiny, "test", 5):
        for r in np.flatnonzero(batch["mask"]):
            rows.append({k: batch[k][r] for k in ("id", "audio", "boxes", "num_boxes", "image")})
    assert len(rows) == 12
    n = int(round(tiny.sample_rate * tiny.audio_seconds))
    for row in rows:
        example_id = row["id"].decode()
        wav, sr = sf.read(os.path.join(root, "audio", f"{example_id}.wav"), dtype="int16")
        start = len(wav) // 2 - n // 2
        np.testing.assert_array_equal(row["audio"], wav[start : start + n])
        assert sr == tiny.sample_rate
        assert row["image"].shape == (64, 64, 3)
        expected = protocol.gt_map(
            xml_boxes(os.path.join(root, "Annotations", f"{example_id}.xml")), "flickr"
        )
        stored = {"boxes": row["boxes"][None], "num_boxes": row["num_boxes"][None]}
        np.testing.assert_array_equal(protocol.gt_map_of(stored, 0, "flickr"), expected)


def test_evaluate_split_baselines_match_direct_computation(tiny):
    builder, root = raw_root(tiny)
    mesh = sharding.create_mesh()
    results = evaluator.evaluate_split(None, {}, builder, tiny, mesh, baselines=True)
    centre = protocol.normalize_map(diagnostics.centre_prior_map())
    ids = [l.split(",")[0] for l in open(os.path.join(root, "test.csv")).read().split()]
    cious = [
        protocol.sample_ciou(
            centre,
            protocol.gt_map(xml_boxes(os.path.join(root, "Annotations", f"{i}.xml")), "flickr"),
        )
        for i in ids
    ]
    expected = protocol.summarize(cious)
    centre_result = {k: results["centre_prior"][k] for k in expected}
    assert centre_result == pytest.approx(expected, rel=1e-12)
    assert results["every_object"]["n"] == 12

    # The audio-blind centre map's peak (pixel 111 of 224 on both axes: the Gaussian's two
    # central pixels tie) against the world's own scene list: it is on the object whose
    # box holds it and whose centre is nearest.
    scenes = json.load(open(os.path.join(root, "scenes.json")))
    p = 111.5 / 224 * 256
    sounding = [
        object_at(p, p, s["objects"]) == [o["sounding"] for o in s["objects"]].index(True)
        for s in scenes.values()
    ]
    swap = [
        object_at(p, p, s["objects"]) == s["swap_index"]
        for s in scenes.values()
        if s["swap_index"] is not None
    ]
    assert results["centre_prior"]["peak_on_sounding"] == pytest.approx(100 * np.mean(sounding))
    assert results["centre_prior"]["swap_n"] == len(swap) > 0
    assert results["centre_prior"]["swap_score"] == pytest.approx(np.mean(swap))


def test_model_peaks_are_read_on_the_models_own_grid(tiny):
    """A model variant's peak-on-sounding and audio swap: the peak's cell of the model's
    h×w map, its centre against the world's own boxes (not the 224² protocol map)."""
    builder, root = raw_root(tiny)
    mesh = sharding.create_mesh()
    model = models.create_model(tiny)
    variables = models.init_variables(model, tiny, jax.random.key(3))
    results = evaluator.evaluate_split(model, {"AVC": variables}, builder, tiny, mesh)["AVC"]

    scenes = json.load(open(os.path.join(root, "scenes.json")))

    def on(grid, objects):
        h, w = grid.shape
        iy, ix = divmod(int(np.argmax(grid)), w)
        return object_at((ix + 0.5) / w * 256, (iy + 0.5) / h * 256, objects)

    def grids(image, pcm):
        a, v = model.apply(variables, image, pcm, train=False)
        return np.einsum("bhwc,bc->bhw", np.asarray(v, np.float64), np.asarray(a, np.float64))

    sounding, swap = [], []
    for batch in input_pipeline.eval_batches(builder, tiny, "test", 5):
        maps = grids(batch["image"], batch["audio"])
        maps_swapped = grids(batch["image"], batch["swap_audio"])
        for r in np.flatnonzero(batch["mask"]):
            scene = scenes[batch["id"][r].decode()]
            objects = scene["objects"]
            assert maps[r].shape == (2, 2)  # 64² images: a 2×2 map.
            sounding.append(on(maps[r], objects) == [o["sounding"] for o in objects].index(True))
            if scene["swap_index"] is not None:
                swap.append(on(maps_swapped[r], objects) == scene["swap_index"])
    assert results["peak_on_sounding"] == pytest.approx(100 * np.mean(sounding))
    assert results["swap_n"] == len(swap) > 0
    assert results["swap_score"] == pytest.approx(np.mean(swap))


def test_a_border_cell_peak_is_on_the_object_its_centre_is_in():
    """The protocol's corner-aligned upsampling draws a border cell on the image's outer
    pixels: a peak on the top-middle cell of a 5×5 map, whose centre (y 0.1) is in the
    box, reads as beside the box on the 224² map."""
    grid = np.zeros((5, 5))
    grid[0, 2] = 1.0
    box = [[0.3, 0.05, 0.7, 0.5]]
    assert diagnostics.peak_object(grid, box) == 0
    assert diagnostics.peak_object(protocol.protocol_maps(grid[None])[0], box) == -1


def test_peak_object_takes_the_nearest_centre_among_boxes_holding_the_peak():
    boxes = [[0.1, 0.1, 0.7, 0.7], [0.4, 0.4, 0.9, 0.9]]

    def peak_at(y, x):
        m = np.zeros((224, 224))
        m[y, x] = 1.0
        return m

    assert diagnostics.peak_object(peak_at(100, 100), boxes) == 0  # In both, nearer box 0's centre.
    assert diagnostics.peak_object(peak_at(140, 140), boxes) == 1  # In both, nearer box 1's centre.
    assert diagnostics.peak_object(peak_at(30, 30), boxes) == 0  # Only in box 0.
    assert diagnostics.peak_object(peak_at(10, 210), boxes) == -1  # In neither.
    assert diagnostics.peak_object(peak_at(10, 210), np.zeros((0, 4))) == -1
