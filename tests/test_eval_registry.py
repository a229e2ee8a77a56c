"""The evaluation registry (`config.evals`) and the protocols' accumulators, against
independent numpy computations over all samples at once."""

import numpy as np
import pytest

from avkd_jax import default_config, losses
from avkd_jax.eval import diagnostics, evaluator, protocol, registry


def fake_batches(rng, sizes, pad=2):
    """Padded eval batches of random ground-truth boxes (vggss rule), `pad` rows masked off."""
    batches, start = [], 0
    for n in sizes:
        b = n + pad
        lo = rng.uniform(0, 0.5, [b, 2, 2])
        boxes = np.concatenate([lo, lo + rng.uniform(0.1, 0.5, [b, 2, 2])], -1)  # yxyx
        batches.append(
            {
                "mask": np.arange(b) < n,
                "id": np.array([f"clip{start + i}".encode() for i in range(b)]),
                "boxes": boxes.astype(np.float32),
                "num_boxes": rng.integers(1, 3, [b]),
            }
        )
        start += n
    return batches


def random_predict(rng, grid=(3, 3)):
    """A predict function: random model grids `[n, h, w]` for 'AVC' and 'other'."""

    def predict(batch):
        n = len(batch.rows)
        grids = {name: rng.normal(size=(n,) + grid).astype(np.float32) for name in ("AVC", "other")}
        maps = {name: protocol.protocol_maps(g) for name, g in grids.items()}
        return evaluator.Maps(maps, tuple(grids), grids)

    return predict


def numpy_ciou(pred, gt):
    """cIoU of one map, written out independently: median threshold, consensus IoU."""
    threshold = np.sort(pred.ravel())[pred.size // 2]
    inferred = pred >= threshold
    return (gt * inferred).sum() / (gt.sum() + (inferred & (gt == 0)).sum())


def test_unknown_protocol_names_the_field_and_the_known_ones():
    config = default_config.base_config()
    config.evals = ("lvs", "nope")
    with pytest.raises(
        ValueError,
        match=r"config\.evals.*'nope'.*known: extended, is3, lvs, negative_audio, peaks, synthetic",
    ):
        registry.build(config.evals, config)
    with pytest.raises(ValueError, match=r"config\.evals must be a list"):
        registry.build("lvs", config)
    assert list(registry.build(default_config.base_config().evals, config)) == [
        "lvs",
        "peaks",
        "synthetic",
    ]


def test_a_registered_protocol_is_called_with_every_batch_and_its_maps(monkeypatch):
    monkeypatch.setattr(
        registry, "_PROTOCOLS", dict(registry._PROTOCOLS)
    )  # Registers for this test only.
    calls = []

    @registry.register("toy_test_protocol")
    class Toy:
        wants_swap = False

        def __init__(self, config):
            self.config = config

        def update(self, batch, maps):
            calls.append((list(batch.ids), {k: v.copy() for k, v in maps.maps.items()}))

        def result(self):
            return {"AVC": {"toy": len(calls)}}

    config = default_config.base_config()
    config.evals = ("toy_test_protocol", "lvs")
    protocols = registry.build(config.evals, config)
    assert protocols["toy_test_protocol"].config is config
    rng = np.random.default_rng(0)
    seen = []
    predict = random_predict(rng)

    def recording(batch):
        seen.append(predict(batch))
        return seen[-1]

    batches = fake_batches(rng, [3, 4])
    results, cious = evaluator.Evaluator(recording, protocols, "vggss").run(
        batches, ["AVC", "other"]
    )
    assert [ids for ids, _ in calls] == [
        ["clip0", "clip1", "clip2"],
        ["clip3", "clip4", "clip5", "clip6"],
    ]
    for (_, maps), made in zip(calls, seen):
        assert list(maps) == ["AVC", "other"]
        for name in maps:
            np.testing.assert_array_equal(maps[name], made.maps[name])
    # The protocols' keys in config.evals order; 'other' has no toy entry.
    assert list(results["AVC"]) == ["toy", "ciou", "auc", "mean_ciou", "n"]
    assert results["AVC"]["toy"] == 2 and "toy" not in results["other"]
    assert list(cious) == ["AVC", "other"] and len(cious["AVC"]) == 7


def test_accumulators_over_batches_equal_the_protocol_over_all_samples_at_once():
    rng = np.random.default_rng(1)
    batches = fake_batches(rng, [5, 1, 4])
    seen = []
    predict = random_predict(rng, grid=(4, 3))

    def recording(batch):
        seen.append((batch, predict(batch)))
        return seen[-1][1]

    config = default_config.base_config()
    protocols = registry.build(("lvs", "peaks"), config)
    run = evaluator.Evaluator(recording, protocols, "vggss")
    results, cious = run.run(batches, ["AVC", "other"])
    assert run.ids == [f"clip{i}" for i in range(10)]

    for name in ("AVC", "other"):
        preds = np.concatenate([m.maps[name] for _, m in seen])  # [10, 224, 224]
        gts = [g for b, _ in seen for g in b.gts]
        expected = [numpy_ciou(p, g) for p, g in zip(preds, gts)]
        np.testing.assert_allclose(cious[name], expected, rtol=1e-12, atol=0)
        summary = protocol.summarize(expected)
        for key in ("ciou", "auc", "mean_ciou", "n"):
            assert results[name][key] == pytest.approx(summary[key], rel=1e-12, abs=1e-12)

        grids = np.concatenate([m.grids[name] for _, m in seen])  # [10, 4, 3]
        flat = grids.reshape(len(grids), -1).argmax(-1)
        hist = np.bincount(flat, minlength=12).reshape(4, 3)
        assert results[name]["peak_hist"] == hist.tolist()
        inner = hist[1:-1, 1:-1].sum()
        assert results[name]["border_peak"] == pytest.approx(100 * (10 - inner) / 10)


def test_scene_objects_protocol_passes_over_batches_without_objects():
    rng = np.random.default_rng(2)
    batches = fake_batches(rng, [3])
    protocols = registry.build(("synthetic",), None)
    results, cious = evaluator.Evaluator(random_predict(rng), protocols, "vggss").run(
        batches, ["AVC"]
    )
    assert results == {} and cious == {}


def test_upsample_map_is_numpy_and_equals_the_training_resize():
    rng = np.random.default_rng(3)
    for shape in [(2, 7, 7), (3, 2, 2), (1, 25, 25), (2, 1, 1)]:
        maps = rng.normal(size=shape).astype(np.float32)
        ours = protocol.upsample_map(maps)
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
        np.testing.assert_array_equal(
            ours, np.asarray(losses.resize_bilinear(maps, (224, 224), align_corners=True))
        )


def test_peak_cell_is_the_argmax():
    m = np.zeros([3, 4])
    m[2, 1] = 1
    assert diagnostics.peak_cell(m) == (2, 1)
