"""Object-guided inference (paper §3.5, docs/design.md, Evaluation): the object map and the fusions.

The fusion arithmetic is checked on hand-made maps whose thresholds and cIoUs are worked
out by hand, the resizing against torch, and the object map against the same computation
on the PyTorch ResNet18 (`teachers/torch_resnet.py`, torchvision's layout) with random
weights converted by `teachers.convert_resnet`.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.torch_reference import random_resnet, write_resnet_npz

from avkd_jax import pretrained, sharding
from avkd_jax.datasets import hint_shards
from avkd_jax.eval import evaluator, fusion, protocol, reports

S = protocol.MAP_SIZE
HALF = S // 2


def torch_protocol(maps):
    """The protocol's resize and normalisation, independently: torch's bilinear resize with
    align_corners=True (EZ-VSL's test code), then per-map min-max in numpy."""
    up = F.interpolate(
        torch.from_numpy(np.array(maps, np.float32))[:, None],
        size=(S, S),
        mode="bilinear",
        align_corners=True,
    )[:, 0].numpy()
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up - lo) / (hi - lo)


def normalized(maps):
    """Per-map min-max over the last two axes, in numpy."""
    lo = maps.min(axis=(-2, -1), keepdims=True)
    return (maps - lo) / (maps.max(axis=(-2, -1), keepdims=True) - lo)


def quadrants(tl, tr, bl, br):
    m = np.zeros([S, S])
    m[:HALF, :HALF], m[:HALF, HALF:], m[HALF:, :HALF], m[HALF:, HALF:] = tl, tr, bl, br
    return m


def test_protocol_maps_are_torchs_resize_then_min_max():
    rng = np.random.default_rng(0)
    for grid in (7, 25):
        maps = rng.normal(size=[3, grid, grid]).astype(np.float32)
        np.testing.assert_allclose(
            protocol.protocol_maps(maps), torch_protocol(maps), atol=1e-5, rtol=0
        )


def test_og_fusion_moves_the_threshold_as_worked_out_by_hand():
    avc = quadrants(1, 0, 1, 0)  # the left half
    obj = quadrants(1, 1, 0, 0)  # the top half
    gt = quadrants(1, 1, 0, 0)
    quarter = HALF * HALF
    # α = 0.4: cells are TL 1, TR 0.4, BL 0.6, BR 0. The median cell (index S²/2 of the
    # sorted map) is the first of the BL quarter, 0.6: the left half is inferred.
    fused = fusion.fuse_og(avc, obj, 0.4)
    np.testing.assert_allclose(fused, quadrants(1.0, 0.4, 0.6, 0.0))
    assert protocol.sample_ciou(fused, gt) == pytest.approx(quarter / (2 * quarter + quarter))
    # α = 0.7: TL 1, TR 0.7, BL 0.3, BR 0: the top half is inferred, exactly the truth.
    assert protocol.sample_ciou(fusion.fuse_og(avc, obj, 0.7), gt) == 1.0
    # α = 0 is the AVC map itself.
    np.testing.assert_array_equal(fusion.fuse_og(avc, obj, 0.0), avc)


def test_authors_og_fusion_picks_other_cells_than_the_papers():
    """config.og_fusion: 'paper' (1 − α)·AVC + α·object against 'authors'
    normalise(AVC + α·object), written out in numpy, where their median cells differ."""
    avc = quadrants(1, 0, 1, 0)  # the left half
    obj = quadrants(1, 1, 0, 0)  # the top half
    gt = quadrants(1, 1, 0, 0)
    a = 0.6
    paper = fusion.fuse_og(avc, obj, a, "paper")
    authors = fusion.fuse_og(avc, obj, a, "authors")
    np.testing.assert_allclose(paper, (1 - a) * avc + a * obj)
    s = avc + a * obj  # TL 1.6, TR 0.6, BL 1, BR 0
    np.testing.assert_allclose(authors, (s - s.min()) / (s.max() - s.min()))
    np.testing.assert_allclose(authors, quadrants(1, 0.375, 0.625, 0))
    # The median cell (index S²/2 of the sorted map): TR's 0.6 for the paper's (TL 1,
    # TR 0.6, BL 0.4): the top half; BL's 0.625 for the authors': the left half.
    assert np.sort(paper.ravel())[S * S // 2] == pytest.approx(0.6)
    assert np.sort(authors.ravel())[S * S // 2] == pytest.approx(0.625)
    np.testing.assert_array_equal(paper >= 0.6 - 1e-9, gt == 1)
    np.testing.assert_array_equal(authors >= 0.625 - 1e-9, avc == 1)
    quarter = HALF * HALF
    assert protocol.sample_ciou(paper, gt) == 1.0
    assert protocol.sample_ciou(authors, gt) == pytest.approx(quarter / (3 * quarter))

    # A batch: each map normalised on its own.
    rng = np.random.default_rng(3)
    avcs, objs = rng.random([2, S, S]), rng.random([2, S, S])
    objs[1] *= 5
    got = fusion.fuse_og(avcs, objs, 0.4, "authors")
    for k in range(2):
        m = avcs[k] + 0.4 * objs[k]
        np.testing.assert_allclose(got[k], (m - m.min()) / (m.max() - m.min()), atol=1e-12)
    np.testing.assert_array_equal(fusion.fuse_og(avcs, objs, 0.4), 0.6 * avcs + 0.4 * objs)
    with pytest.raises(ValueError, match=r"config\.og_fusion='mean'"):
        fusion.fuse_og(avc, obj, a, "mean")
    with pytest.raises(ValueError, match=r"config\.og_fusion='mean'"):
        evaluator.Predictor(None, {}, sharding.create_mesh(), a, og_fusion="mean")


def test_og_detr_fusion_and_nothing_detected():
    avc, obj, gt = quadrants(1, 0, 1, 0), quadrants(1, 1, 0, 0), quadrants(1, 1, 0, 0)
    detr = quadrants(0, 1, 0, 0)  # the top-right quarter
    # (1+1+0, 0+1+1, 1+0+0, 0)/3 = TL 2/3, TR 2/3, BL 1/3, BR 0: the median cell (index
    # S²/2 = 2q of the sorted map) is the first of the 2/3 cells: the top half, the truth.
    fused = fusion.fuse_og_detr(avc, obj, detr)
    np.testing.assert_allclose(fused, quadrants(2, 2, 1, 0) / 3)
    assert protocol.sample_ciou(fused, gt) == 1.0

    # DETR found nothing: its map is NaN everywhere and counts as zeros. The sum is then
    # TL 2/3, TR 1/3, BL 1/3, BR 0 with threshold 1/3: TL, TR and BL are inferred, cIoU
    # 2q / (2q + q), as (AVC + object) alone.
    zeros = fusion.detr_maps(np.full([1, 25, 25], np.nan, np.float32))
    np.testing.assert_array_equal(zeros, np.zeros([1, S, S]))
    without = fusion.fuse_og_detr(avc, obj, zeros[0])
    assert protocol.sample_ciou(without, gt) == pytest.approx(2 / 3)
    assert protocol.sample_ciou(avc + obj, gt) == pytest.approx(2 / 3)


def test_detr_maps_are_resized_like_the_others_and_partial_nan_is_refused():
    rng = np.random.default_rng(1)
    hints = rng.random([2, 25, 25]).astype(np.float16)
    np.testing.assert_allclose(
        fusion.detr_maps(hints), torch_protocol(hints.astype(np.float32)), atol=1e-5
    )
    hints[1, 3, 4] = np.nan
    with pytest.raises(hint_shards.HintError, match="id clip-b is NaN in some cells only"):
        fusion.detr_maps(hints, ["clip-a", "clip-b"])


def test_object_map_matches_torch_resnet18(tmp_path):
    """EZ-VSL's object map: mean over channels of |layer4|, then the protocol's resize."""
    net = random_resnet(0.5)
    variables, width = pretrained.load_object_npz(write_resnet_npz(net, tmp_path / "r.npz"))
    assert width == 0.5  # read from the file, not assumed to be the student's
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, [2, 96, 96, 3], dtype=np.uint8)

    ours = np.asarray(
        fusion.object_maps(fusion.ObjectModel(width, variables).trunk, variables, image)
    )

    x = (image / 255.0 - np.array(fusion.models.IMAGENET_MEAN)) / np.array(
        fusion.models.IMAGENET_STD
    )
    with torch.no_grad():
        feats = net.trunk(torch.from_numpy(x.transpose(0, 3, 1, 2)).float())
    reference = feats.abs().mean(1).numpy()
    assert ours.shape == reference.shape == (2, 3, 3)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(
        protocol.protocol_maps(ours), torch_protocol(reference), atol=1e-4, rtol=0
    )


def test_object_npz_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        pretrained.load_object_npz(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(pretrained.PretrainedError, match="bad.npz: not a readable"):
        pretrained.load_object_npz(str(bad))
    other = tmp_path / "other.npz"
    np.savez(other, **{"params/conv9/kernel": np.zeros([1])})
    with pytest.raises(pretrained.PretrainedError, match="params/conv1/kernel"):
        pretrained.load_object_npz(str(other))


def write_detr_hints(builder, split, hints_dir, teacher):
    """DETR-like maps for every record of `split` (the first one "nothing detected"), in the
    hint-shard format; returns id → map."""
    import tensorflow as tf

    from avkd_jax import input_pipeline

    rng = np.random.default_rng(5)
    files = input_pipeline.split_files(builder, split)
    spec = hint_shards.HintSpec(teacher, {"visual_hint": (25, 25)}, "test", 0)
    maps, total = {}, 0
    for f in files:
        with tf.io.TFRecordWriter(hint_shards.hint_path(f, teacher, hints_dir)) as w:
            for i in hint_shards.data_ids(f):
                m = rng.random([25, 25]).astype(np.float32) if maps else np.full([25, 25], np.nan)
                maps[i] = m.astype(np.float16)
                w.write(hint_shards.encode_example(i, {"visual_hint": m}, spec))
                total += 1
    spec = hint_shards.HintSpec(teacher, spec.shapes, "test", total)
    hint_shards.write_spec(hint_shards.spec_path(files[0], teacher, hints_dir), spec)
    return maps


def test_evaluation_scores_the_fusions_and_notes_what_it_skips(tiny, tmp_path):
    """`evaluate_sets` on the tiny world: the OG variants' per-sample cIoUs equal a
    recomputation from the raw maps (torch resize, numpy fusion); variants whose inputs
    are missing are listed with the reason, and results.md prints it."""
    import jax

    from avkd_jax import datasets, input_pipeline, models

    config = tiny.copy_and_resolve_references()
    config.object_npz = write_resnet_npz(random_resnet(0.125), tmp_path / "resnet.npz")
    config.og_detr_teacher = "fakedetr"
    config.hints_dir = str(tmp_path / "hints")
    config.og_alpha = 0.3
    (tmp_path / "hints").mkdir()
    eval_sets = datasets.get_eval_sets(config)
    builder = eval_sets["synthetic_test"].builder
    hints = write_detr_hints(builder, "test", config.hints_dir, "fakedetr")
    model = models.create_model(config)
    variables = models.init_variables(model, config, jax.random.key(0))
    mesh = sharding.create_mesh()

    result = evaluator.evaluate_sets(model, {"AVC": variables}, eval_sets, config, mesh)
    e = result["synthetic_test"]
    assert list(e.results) == ["AVC", "OG-AVC", "OG-AVC-DETR"]

    objects, _ = fusion.load_object_model(config, builder)
    maps_fn = jax.jit(lambda v, i, a: fusion.model_maps(model, v, i, a))
    objects_fn = jax.jit(lambda v, i: fusion.object_maps(objects.trunk, v, i))
    expected = {"AVC": [], "OG-AVC": [], "OG-AVC-DETR": [], "authors": []}
    for batch in input_pipeline.eval_batches(builder, config, "test", 5):
        for r in np.flatnonzero(batch["mask"]):
            image, pcm = batch["image"][r : r + 1], batch["audio"][r : r + 1]
            avc = torch_protocol(np.asarray(maps_fn(variables, image, pcm)))
            obj = torch_protocol(np.asarray(objects_fn(objects.variables, image)))
            detr = hints[batch["id"][r].decode()].astype(np.float32)[None]
            detr = np.zeros([1, S, S]) if np.isnan(detr).all() else torch_protocol(detr)
            gt = protocol.gt_map_of(batch, r, "flickr")
            for name, pred in (
                ("AVC", avc),
                ("OG-AVC", 0.7 * avc + 0.3 * obj),
                ("OG-AVC-DETR", (avc + obj + detr) / 3),
                ("authors", normalized(avc + 0.3 * obj)),
            ):
                expected[name].append(protocol.sample_ciou(pred[0], gt))
    authors = expected.pop("authors")
    for name, values in expected.items():
        # Batches of 5 against single samples: oneDNN's convolutions split the work by
        # batch size, so the maps differ in float32 round-off, far below atol.
        np.testing.assert_allclose(e.cious[name], values, atol=1e-4, err_msg=name)
        assert e.results[name]["ciou"] == protocol.summarize(values)["ciou"]

    # config.og_fusion='authors' reaches the Predictor (as in --mode=eval): OG-AVC changes,
    # the other variants do not.
    config.og_fusion = "authors"
    e2 = evaluator.evaluate_sets(model, {"AVC": variables}, eval_sets, config, mesh)
    e2 = e2["synthetic_test"]
    np.testing.assert_allclose(e2.cious["OG-AVC"], authors, atol=1e-4)
    assert not np.allclose(authors, expected["OG-AVC"], atol=1e-4)
    for name in ("AVC", "OG-AVC-DETR"):
        np.testing.assert_array_equal(e2.cious[name], e.cious[name])
    config.og_fusion = "paper"

    # The real DETR's hints are not there: that variant is skipped, with the command.
    config.og_detr_teacher = "detr"
    e = evaluator.evaluate_sets(model, {"AVC": variables}, eval_sets, config, mesh)[
        "synthetic_test"
    ]
    assert list(e.results) == ["AVC", "OG-AVC", evaluator.SKIPPED]
    why = e.results[evaluator.SKIPPED]["OG-AVC-DETR"]
    assert "no hints extracted" in why and "-m teachers.extract" in why and "--split=test" in why
    text = reports.write_results(str(tmp_path), {"synthetic_test": e.results}, 3)
    assert f"Not evaluated:\n\n- OG-AVC-DETR: {why}" in text
    assert "| OG-AVC |" in text and "| skipped |" not in text

    # No object model (both object-guided variants are skipped), or a missing file.
    config.object_npz = None
    assert fusion.load_object_model(config, builder)[1].startswith("no object model")
    config.object_npz = str(tmp_path / "gone.npz")
    assert (
        "gone.npz (config.object_npz) does not exist"
        in fusion.load_object_model(config, builder)[1]
    )
