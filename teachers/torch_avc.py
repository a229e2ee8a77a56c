"""The authors' AVC student in PyTorch, and its train step written the way the PyTorch peer
code writes it: the reference our JAX model is measured and checked against.

Eager torchvision-layout ResNet18s (`teachers/torch_resnet.py`, NCHW, float32), the
authors' module names (`imgnet`, `img_proj`, `audnet`, `aud_proj`, so that
`teachers.convert_avc` maps a model, or a released checkpoint of one, onto ours),
`torch.optim.Adam`. The step does the work our jitted step does, from the same raw
inputs: the log-spectrogram of the int16 PCM (scipy.signal.spectrogram's numbers, with
torch ops), ImageNet normalisation, both students, the contrastive loss (max over the
map, cross entropy both ways), the audio and visual hint losses, and one Adam step.
Imported by no CLI; `benchmarks/train_step.py` times the step,
`tests/test_bf16.py` checks its losses against ours, and the tests' random AVCs
(`tests/helpers/torch_reference.py`) are `AVCStudent`s.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from teachers import torch_resnet

NPERSEG, NOVERLAP = 512, 274
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def log_spectrogram(pcm: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """int16 PCM `[B, N]` → the audio student's input `[B, 1, 257, T]`, float32.

    `np.log(scipy.signal.spectrogram(pcm / 32768, sample_rate, nperseg=512,
    noverlap=274)[2] + 1e-7) / 12`: periodic Tukey(0.25) window, each segment's mean
    removed, one-sided density scaling; T = (N - 274) // 238.
    """
    window = torch.from_numpy(scipy.signal.get_window(("tukey", 0.25), NPERSEG).astype(np.float32))
    x = pcm.float() / 32768.0
    frames = x.unfold(-1, NPERSEG, NPERSEG - NOVERLAP)  # [B, T, 512]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    power = torch.fft.rfft(frames * window, dim=-1).abs().square()  # [B, T, 257]
    fold = torch.full([NPERSEG // 2 + 1], 2.0)
    fold[0] = fold[-1] = 1.0
    power = power * fold / (sample_rate * window.square().sum())
    return (torch.log(power + 1e-7) / 12.0).transpose(1, 2).unsqueeze(1)


def image_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 `[B, H, W, 3]` → ImageNet-normalised float32 `[B, 3, H, W]`."""
    x = image.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class AVCStudent(nn.Module):
    """Both students: `(image [B, 3, H, W], spec [B, 1, F, T])` → `(a [B, D], v [B, D, h, w])`,
    L2-normalised (a: global max pool and Linear; v: 1×1 conv on the visual trunk)."""

    def __init__(self, width: float = 1.0, dim: int = 2048):
        super().__init__()
        self.imgnet = torch_resnet.resnet18(3, 1, width)
        self.audnet = torch_resnet.resnet18(1, 1, width)
        del self.imgnet.fc, self.audnet.fc
        channels = round(64 * width) * 8
        self.img_proj = nn.Conv2d(channels, dim, 1)
        self.aud_proj = nn.Linear(channels, dim)

    def forward(self, image, spec):
        v = F.normalize(self.img_proj(self.imgnet.trunk(image)), dim=1)
        a = F.adaptive_max_pool2d(self.audnet.trunk(spec), 1).flatten(1)
        return F.normalize(self.aud_proj(a), dim=1), v


def contrastive_loss(a, v, tau: float) -> torch.Tensor:
    """EZ-VSL's max-over-map InfoNCE: CE(logits) + CE(logitsᵀ), logits[i, j] =
    max over (h, w) of <v_j[:, h, w], a_i> / tau."""
    logits = torch.einsum("nc,mchw->nmhw", a, v).flatten(-2).max(dim=-1).values / tau
    labels = torch.arange(a.shape[0])
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)


def visual_hint_loss(v, hint) -> torch.Tensor:
    """MSE of the channel mean of `v`, resized to the hint's grid (align_corners=False),
    to `hint [B, h, w]`, over the samples whose hint has no NaN."""
    m = F.interpolate(v.mean(1, keepdim=True), size=hint.shape[-2:], mode="bilinear")[:, 0]
    kept = ~torch.isnan(hint).flatten(1).any(1)
    per_sample = (m - torch.nan_to_num(hint)).square().flatten(1).mean(1)
    return (per_sample * kept).sum() / kept.sum().clamp(min=1)


def loss_terms(model, batch: dict, *, tau, alphas, sample_rate) -> tuple[torch.Tensor, dict]:
    """L = α1·L_S + α2·L_a + α3·L_v of a batch of torch tensors (`image` uint8 NHWC,
    `audio` int16, `audio_hint` [B, D], `visual_hint` [B, h, w]). Returns (L, terms)."""
    a, v = model(image_input(batch["image"]), log_spectrogram(batch["audio"], sample_rate))
    terms = {"loss_contrastive": contrastive_loss(a, v, tau)}
    if alphas[1]:
        terms["loss_audio_hint"] = F.mse_loss(a, batch["audio_hint"].float())
    if alphas[2]:
        terms["loss_visual_hint"] = visual_hint_loss(v, batch["visual_hint"].float())
    names = ("loss_contrastive", "loss_audio_hint", "loss_visual_hint")
    total = sum(alpha * terms[n] for alpha, n in zip(alphas, names) if alpha)
    return total, terms


def make_train_step(model, config, autocast: bool = False):
    """A closure running one Adam step (lr `config.learning_rate`) on a batch; returns L.
    `autocast`: the forward under torch.autocast('cpu', bfloat16), PyTorch's mixed
    precision (the peer code trains in float32)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    alphas = (config.alpha_contrastive, config.alpha_audio, config.alpha_visual)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            total, _ = loss_terms(
                model, batch, tau=config.tau, alphas=alphas, sample_rate=config.sample_rate
            )
        total.backward()
        optimizer.step()
        return total.detach()

    return step


def create_model(config, seed: int = 0) -> AVCStudent:
    """A train-mode `AVCStudent` of `config.model`'s width and embedding, float32."""
    torch.manual_seed(seed)
    return AVCStudent(config.model.width, config.model.embed_dim).train()


def torch_batch(batch: dict) -> dict:
    """numpy batch → torch tensors (int16 audio and float16 hints as they are)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
