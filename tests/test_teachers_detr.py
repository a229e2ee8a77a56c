"""DETR hints on a tiny random DETR built offline: the map against a direct computation."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from transformers import DetrConfig, ResNetConfig

from teachers import detr


def tiny_config(num_labels=5):
    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
        out_features=["stage4"],
    )
    return DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        d_model=16,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=12,
        num_labels=num_labels,
    )


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (256, 320, 3), dtype=np.uint8),
        rng.integers(0, 256, (300, 256, 3), dtype=np.uint8),
        rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
    ]


class FixedLogits(torch.nn.Module):
    """A class head that gives query q the logits `table[q]` in every image."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def forward(self, hidden):
        return self.table.expand(hidden.shape[0], -1, -1)


def logits_for(best_probs, num_labels=5):
    """Logits whose softmax gives class 0 probability p, the other classes less, and the
    rest to "no object" (the last column)."""
    p = np.asarray(best_probs, np.float64)[:, None]
    others = np.repeat(np.minimum(p, 1 - p) / 8, num_labels - 1, axis=1)
    no_object = 1 - p - others.sum(1, keepdims=True)
    return np.log(np.concatenate([p, others, no_object], axis=1))


# Queries 0–4 pass the 0.3 threshold (0.31 just), 5–11 do not (0.29 just, and a few with
# a high "no object" probability).
BEST = [0.95, 0.6, 0.45, 0.35, 0.31, 0.29, 0.2, 0.1, 0.05, 0.02, 0.01, 0.001]


@pytest.fixture(scope="module")
def model():
    m = detr.random_detr(tiny_config(), seed=0)
    m.class_labels_classifier = FixedLogits(logits_for(BEST))
    return m


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_map(logits, cross_attention, threshold=0.3):
    """The released code's map, one image at a time, from `outputs.cross_attentions[-1]`."""
    out = []
    for lg, att in zip(logits, cross_attention):
        keep = softmax(lg)[:, :-1].max(-1) > threshold
        if not keep.any():
            out.append(np.full((25, 25), np.nan, np.float32))
            continue
        out.append(np.abs(att.mean(0)[keep]).mean(0).reshape(25, 25))
    return np.stack(out)


def reference_outputs(model, pixel_values, pixel_mask=None):
    if pixel_mask is None:
        pixel_mask = torch.ones(pixel_values.shape[0], 800, 800, dtype=torch.long)
    with torch.no_grad():
        out = model(pixel_values=pixel_values, pixel_mask=pixel_mask, output_attentions=True)
    return out.logits.numpy(), out.cross_attentions[-1].numpy()


def bilinear_numpy(image, size):
    """Half-pixel-centre bilinear resize (upsampling), written independently of torch."""
    h, w = image.shape[:2]

    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = axis(h, size)
    x0, x1, fx = axis(w, size)
    img = image.astype(np.float64)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def test_preprocess_is_bilinear_800_and_imagenet_normalised(images):
    pv = detr.preprocess(images[:2]).numpy()
    assert pv.shape == (2, 3, 800, 800) and pv.dtype == np.float32
    for got, image in zip(pv, images[:2]):
        expected = (bilinear_numpy(image, 800) / 255.0 - detr.IMAGENET_MEAN) / detr.IMAGENET_STD
        # 2e-4 here is 0.01 grey level: torch computes source coordinates in float32.
        np.testing.assert_allclose(got.transpose(1, 2, 0), expected, atol=2e-4)


def test_attention_map_matches_direct_computation(model, images):
    pv = detr.preprocess(images)
    logits, cross = reference_outputs(model, pv)
    assert cross.shape == (3, 2, 12, 625)
    np.testing.assert_allclose(softmax(logits)[..., :-1].max(-1), [BEST] * 3, rtol=1e-5)
    expected = numpy_map(logits, cross)
    got = detr.teacher_from_model(model, "random").compute({"image": images})["visual_hint"]
    assert got.shape == (3, 25, 25) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)
    # An attention-like map: each kept query's head-averaged attention sums to 1.
    np.testing.assert_allclose(got.reshape(3, -1).sum(-1), 1.0, rtol=1e-4)


def test_no_query_passes_gives_nan_and_every_query_passes_gives_the_mean(images):
    m = detr.random_detr(tiny_config(), seed=1)
    teacher = detr.teacher_from_model(m, "random")
    with torch.no_grad():
        m.class_labels_classifier.bias[-1] = 50.0  # "no object" wins everywhere.
    nothing = teacher.compute({"image": images[:2]})["visual_hint"]
    assert np.isnan(nothing).all()
    with torch.no_grad():
        m.class_labels_classifier.bias[-1] = 0.0
        m.class_labels_classifier.bias[2] = 50.0  # Class 2 wins everywhere.
    _, cross = reference_outputs(m, detr.preprocess(images[:2]))
    everything = teacher.compute({"image": images[:2]})["visual_hint"]
    np.testing.assert_allclose(everything, cross.mean(1).mean(1).reshape(2, 25, 25), rtol=1e-5)


def test_map_from_outputs_hand_worked():
    # Two queries over a 2×2 map; logits [class0, class1, no-object].
    logits = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]]])  # q0 kept (p=0.91), q1 not.
    att = torch.tensor([[[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]],
                         [[0.3, 0.2, 0.1, 0.4], [0.1, 0.7, 0.1, 0.1]]]])  # fmt: skip
    got = detr.map_from_outputs(logits, att)
    np.testing.assert_allclose(got.numpy(), [[[0.2, 0.2], [0.2, 0.4]]], rtol=1e-6)


def test_reshape_is_row_major(model, images):
    # Masking the right half of the image masks feature columns 13..24 out of the
    # cross-attention: the map must be 0 there and only there (a transposed reshape would
    # zero the bottom rows instead).
    pv = detr.preprocess(images)
    mask = torch.ones(3, 800, 800, dtype=torch.long)
    mask[:, :, 400:] = 0
    logits, cross = reference_outputs(model, pv, mask)
    maps = detr.map_from_outputs(torch.from_numpy(logits), torch.from_numpy(cross)).numpy()
    ok = ~np.isnan(maps[:, 0, 0])
    assert ok.any()
    assert (maps[ok][:, :, 13:] == 0).all() and (maps[ok][:, :, :13] > 0).all()


def numpy_adaptive_avg_pool(x, grid):
    """[C, H, W] → [grid, grid, C], bins [floor(i·H/g), ceil((i+1)·H/g))."""
    c, h, w = x.shape
    out = np.zeros((grid, grid, c), np.float64)
    for i in range(grid):
        r0, r1 = (i * h) // grid, -((-(i + 1) * h) // grid)
        for j in range(grid):
            c0, c1 = (j * w) // grid, -((-(j + 1) * w) // grid)
            out[i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


def test_backbone_variant_shape_and_area_pooling(model, images):
    teacher = detr.teacher_from_model(model, "random", variant=detr.BACKBONE, grid=7)
    assert teacher.name == "detr_backbone" and teacher.shapes == {"visual_hint": (7, 7, 32)}
    got = teacher.compute({"image": images[:2]})["visual_hint"]
    assert got.shape == (2, 7, 7, 32)
    pv = detr.preprocess(images[:2])
    with torch.no_grad():
        features = model.model.backbone(pv, torch.ones(2, 800, 800, dtype=torch.long))[-1][0]
    assert features.shape == (2, 32, 25, 25)
    for g, f in zip(got, features.numpy()):
        np.testing.assert_allclose(g, numpy_adaptive_avg_pool(f, 7), rtol=1e-5, atol=1e-6)
    # The full-size DETR-R50 backbone has 2048 channels (config only: nothing is built).
    assert detr.resnet50_config().backbone_config.hidden_sizes[-1] == 2048


def test_load_detr_from_saved_directory(tmp_path, images):
    model = detr.random_detr(tiny_config(), seed=2)
    model.save_pretrained(tmp_path / "tiny")
    loaded = detr.load_detr(str(tmp_path / "tiny"))
    assert loaded.config._attn_implementation == "eager"
    teacher = detr.make_teacher(str(tmp_path / "tiny"), variant=detr.BACKBONE, grid=5)
    assert teacher.source == str(tmp_path / "tiny")
    a = detr.teacher_from_model(model, "x", variant=detr.BACKBONE, grid=5)
    batch = {"image": images[:1]}
    np.testing.assert_array_equal(
        teacher.compute(batch)["visual_hint"], a.compute(batch)["visual_hint"]
    )
    with pytest.raises(ValueError, match="--weights=PATH"):
        detr.make_teacher(None)
    with pytest.raises(detr.DetrWeightsError, match="no config.json"):
        detr.load_detr(str(tmp_path / "nowhere"))


def test_timm_snapshot_without_timm_says_what_to_do(tmp_path):
    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here")
    # The hub snapshot's config: a timm ResNet-50 backbone.
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "detr", "use_timm_backbone": True, "backbone": "resnet50"})
    )
    with pytest.raises(detr.DetrWeightsError, match=r"pip install timm.*no_timm"):
        detr.load_detr(str(tmp_path))
