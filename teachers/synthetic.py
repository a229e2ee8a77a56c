"""Small teachers for the synthetic world (docs/design.md, The synthetic world), trained here with labels.

They stand in for DETR and PANNs on the procedural world: trained on a different task and
different data from the students' (labelled single objects and single sounds, from a seed
namespace of their own), then frozen, and their hints have the kinds and shapes of the
real teachers':

* Visual: a tiny fully-convolutional detector. The image resized to 200×200 → class logits
  on a 25×25 grid (stride 8, as DETR's 800 → 25), trained to label each cell with the
  class of the object covering it, or background. Hint, DETR-like: per cell the best
  non-background probability; cells above 0.3 are detections; the map is their
  probabilities (0 elsewhere) normalised to sum to 1 over the 625 cells, all-NaN when no
  cell passes. It highlights every object, sounding or not, as DETR does.
* Audio: a small CNN on its own log-mel front end (not the students' spectrogram),
  trained to classify single sounds mixed with the world's noise at 5–20 dB SNR. Hint: its
  2048-d penultimate post-ReLU embedding, as Cnn14's `embedding`.

    python -m teachers.synthetic --out=data/synthetic_teachers.pt

trains both (deterministically) and writes one `.pt` (state_dicts, hyper-parameters and
held-out numbers; read with `torch.load(weights_only=True)`); `ensure_trained(path)` does
the same only when the file is missing.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from avkd_jax import errors, files
from avkd_jax.datasets import synthetic_world as world
from teachers import common
from teachers.synthetic_data import BACKGROUND, GRID, NAMESPACE, generate, visual_input

FORMAT = "avkd-synthetic-teachers"
VERSION = 1
THRESHOLD = 0.3
EMBEDDING_DIM = 2048
SAMPLE_RATE = world.SAMPLE_RATE

DEFAULTS = {
    "visual_width": 32,
    "visual_images": 1600,
    "visual_steps": 800,
    "audio_width": 16,
    "audio_clips": 960,
    "audio_steps": 120,
    "audio_seconds": 1.5,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "heldout_images": 200,
    "heldout_clips": 400,
    "heldout_scenes": 200,
}


# ------------------------------------------------------------------------------ models


def _conv_bn_relu(cin, cout, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class VisualNet(nn.Module):
    """uint8 `[B, 200, 200, 3]` → class logits `[B, K + 1, 25, 25]` (the last: background).

    A 4×4 patchify conv and one stride-2 conv reach the 25×25 grid; dilated convs (1, 2,
    4, 8) then widen the receptive field to the whole image, which telling shapes apart
    from the middle of a large object needs.
    """

    def __init__(self, width: int = 32, num_classes: int = world.NUM_CLASSES + 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 4, 4, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True),
        )
        self.body = nn.Sequential(
            _conv_bn_relu(width // 2, width, stride=2),
            *[_conv_bn_relu(width, width, dilation=d) for d in (1, 2, 4, 8)],
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, image):
        x = image.permute(0, 3, 1, 2).float() / 255.0
        x = (x - 0.5) / 0.25
        return self.head(self.body(self.stem(x)))


class LogMel(nn.Module):
    """int16 PCM `[B, N]` at 22,050 Hz → log-mel `[B, 1, 64, T]` (1024-point STFT, hop 256)."""

    def __init__(self, n_fft: int = 1024, hop: int = 256, mels: int = 64):
        super().__init__()
        import librosa  # Only for the filter bank, once.

        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=mels, fmin=50.0)
        self.register_buffer("filters", torch.from_numpy(fb.astype(np.float32)))
        self.register_buffer("window", torch.hann_window(n_fft))
        self.n_fft, self.hop = n_fft, hop

    def forward(self, pcm):
        x = pcm.float() / 32768.0
        spec = torch.stft(
            x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True
        )
        power = spec.real**2 + spec.imag**2  # [B, F, T]
        return torch.log(torch.matmul(self.filters, power) + 1e-6)[:, None]


class AudioNet(nn.Module):
    """int16 PCM `[B, N]` → (logits `[B, K]`, embedding `[B, 2048]` post-ReLU)."""

    def __init__(self, width: int = 32, num_classes: int = world.NUM_CLASSES):
        super().__init__()
        self.front = LogMel()
        self.norm = nn.BatchNorm2d(1)  # Level and mel-bin scale, learnt (as Cnn14's bn0).
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        blocks = []
        for cin, cout in itertools.pairwise(chans):
            blocks += [_conv_bn_relu(cin, cout), nn.AvgPool2d(2)]
        self.body = nn.Sequential(*blocks)
        self.fc = nn.Linear(chans[-1], EMBEDDING_DIM)
        self.classifier = nn.Linear(EMBEDDING_DIM, num_classes)

    def forward(self, pcm):
        x = self.body(self.norm(self.front(pcm)))  # [B, C, mels/16, T/16]
        x = x.mean(2)  # over frequency
        x = x.amax(2) + x.mean(2)  # over time, as Cnn14
        embedding = F.relu(self.fc(x))
        return self.classifier(embedding), embedding


# ------------------------------------------------------------------------------- hints


def visual_hint_from_logits(logits: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """`[B, K + 1, 25, 25]` → `[B, 25, 25]`: detections' probabilities summing to 1, or NaN.

    Per cell the best non-background probability (softmax over all K + 1 classes); cells
    above `threshold` keep it, the others get 0; normalised to sum 1 over the grid. An
    image with no detection gets NaN everywhere (DETR's "no query passed").
    """
    best = logits.float().softmax(1)[:, :BACKGROUND].amax(1)  # [B, 25, 25]
    kept = torch.where(best > threshold, best, torch.zeros_like(best))
    total = kept.sum((1, 2), keepdim=True)
    nan = torch.full_like(kept, float("nan"))
    return torch.where(total > 0, kept / total.clamp(min=1e-30), nan)


# ---------------------------------------------------------------------------- training


def _train(model, inputs, targets, loss_fn, steps, batch_size, lr, seed, desc, progress):
    """Adam with a cosine schedule over `steps` batches drawn by a seeded permutation."""
    from avkd_jax import terminal

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    model.train()
    order = torch.randperm(len(inputs), generator=gen)
    pos = 0
    with terminal.progress_bar(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(steps):
            if pos + batch_size > len(order):
                order, pos = torch.randperm(len(inputs), generator=gen), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            x, y = inputs[idx], targets[idx]
            if x.ndim == 4:  # Images: a random left-right flip, labels with them.
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(2), x)
                y = torch.where(flip[:, None, None], y.flip(2), y)
            loss = loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    return model.eval()


def _visual_loss(model, x, y):
    return F.cross_entropy(model(x), y)


def _audio_loss(model, x, y):
    return F.cross_entropy(model(x)[0], y)


@torch.no_grad()
def _batched(fn, x, batch_size=64):
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def evaluate(visual: VisualNet, audio: AudioNet, hp: dict, seed: int) -> dict:
    """Held-out numbers: audio accuracy, visual per-cell accuracy, hint mass in boxes."""
    images, labels = generate("image", "visual_heldout", hp["heldout_images"], seed)
    pred = _batched(visual, torch.from_numpy(images)).argmax(1).numpy()
    obj = labels != BACKGROUND
    clips, classes = generate(
        "audio", "audio_heldout", hp["heldout_clips"], seed, hp["audio_seconds"]
    )
    audio_pred = _batched(lambda x: audio(x)[0], torch.from_numpy(clips)).argmax(1).numpy()
    mass, detected = scene_mass_in_boxes(visual, hp["heldout_scenes"], seed)
    return {
        "audio_accuracy": float((audio_pred == classes).mean()),
        "visual_cell_accuracy": float((pred == labels).mean()),
        "visual_object_cell_accuracy": float((pred[obj] == labels[obj]).mean()),
        "visual_object_cell_recall": float((pred[obj] != BACKGROUND).mean()),
        "scene_mass_in_boxes": mass,
        "scene_detected_fraction": detected,
    }


def box_cells(boxes, size=world.IMAGE_SIZE) -> np.ndarray:
    """bool [25, 25]: cells whose centre lies in any [xmin, ymin, xmax, ymax] pixel box."""
    centres = (np.arange(GRID) + 0.5) * size / GRID
    inside = np.zeros((GRID, GRID), bool)
    for x0, y0, x1, y1 in boxes:
        ys = (centres >= y0) & (centres < y1)
        xs = (centres >= x0) & (centres < x1)
        inside |= ys[:, None] & xs[None, :]
    return inside


def _as_stored(image: np.ndarray) -> np.ndarray:
    """The pixels a data shard holds: JPEG twice (the world's frame, then the builder's)."""
    from avkd_jax.datasets import media

    for _ in range(2):
        with Image.open(io.BytesIO(media.encode_jpeg(image))) as img:
            image = np.asarray(img.convert("RGB"))
    return image


@torch.no_grad()
def scene_mass_in_boxes(visual: VisualNet, count: int, seed: int) -> tuple[float, float]:
    """On held-out multi-object scenes (JPEG round trip, as the data shards hold them): the
    mean fraction of the hint's mass in cells inside any object box, and the fraction of
    scenes with a detection at all."""
    masses = []
    for i in range(count):
        scene = world.make_scene(NAMESPACE + seed, "validation", i, include_swap=False)
        image = _as_stored(scene["image"])
        logits = visual(torch.from_numpy(visual_input([image])))
        hint = visual_hint_from_logits(logits)[0].numpy()
        if np.isnan(hint).all():
            continue
        masses.append(hint[box_cells([o["box"] for o in scene["objects"]])].sum())
    return (float(np.mean(masses)) if masses else 0.0), len(masses) / max(count, 1)


def train(seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Trains both teachers; returns the checkpoint dict (see `save`)."""
    hp = dict(DEFAULTS, **overrides)
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown synthetic-teacher settings {sorted(unknown)}")
    start, cpu_start = time.time(), time.process_time()
    common.use_all_cores()
    images, labels = generate("image", "visual_train", hp["visual_images"], seed)
    clips, classes = generate("audio", "audio_train", hp["audio_clips"], seed, hp["audio_seconds"])
    data_s = time.time() - start

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        visual, audio = _train_both(hp, images, labels, clips, classes, seed, progress)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    train_s = time.time() - start - data_s
    metrics = evaluate(visual, audio, hp, seed)
    metrics.update(
        data_seconds=data_s,
        train_seconds=train_s,
        total_seconds=time.time() - start,
        cpu_seconds=time.process_time() - cpu_start,  # This process; data workers not included.
        threads=torch.get_num_threads(),
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "seed": seed,
        "hparams": hp,
        "metrics": metrics,
        "visual_state": visual.state_dict(),
        "audio_state": audio.state_dict(),
    }


def _train_both(hp, images, labels, clips, classes, seed, progress):
    torch.manual_seed(seed)
    visual = _train(
        VisualNet(hp["visual_width"]),
        torch.from_numpy(images),
        torch.from_numpy(labels),
        _visual_loss,
        hp["visual_steps"],
        hp["batch_size"],
        hp["learning_rate"],
        seed,
        "visual teacher",
        progress,
    )
    audio = _train(
        AudioNet(hp["audio_width"]),
        torch.from_numpy(clips),
        torch.from_numpy(classes),
        _audio_loss,
        hp["audio_steps"],
        hp["batch_size"],
        hp["learning_rate"],
        seed + 1,
        "audio teacher",
        progress,
    )
    return visual, audio


def save(checkpoint: dict, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with files.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load(path: str) -> tuple[VisualNet, AudioNet, dict]:
    """The two frozen teachers (eval mode) and the checkpoint's metadata."""
    ckpt = common.load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise errors.CheckpointError(f"{path}: not a synthetic-teachers file ({FORMAT})")
    if ckpt.get("version") != VERSION:
        raise errors.CheckpointError(
            f"{path}: synthetic teachers version {ckpt.get('version')}, this code reads "
            f"{VERSION}: delete the file to retrain"
        )
    hp = ckpt["hparams"]
    visual, audio = VisualNet(hp["visual_width"]), AudioNet(hp["audio_width"])
    visual.load_state_dict(ckpt["visual_state"])
    audio.load_state_dict(ckpt["audio_state"])
    meta = {k: v for k, v in ckpt.items() if not k.endswith("_state")}
    return visual.eval(), audio.eval(), meta


def ensure_trained(path: str, seed: int = 0, progress: bool = True, **overrides) -> str:
    """`path`, training the teachers into it first when the file is missing."""
    if not os.path.exists(path):
        save(train(seed, progress, **overrides), path)
    return path


# ------------------------------------------------------------------------------ teacher


def make_teacher(
    weights: str | None = None, *, random_weights: bool = False, device: str = "cpu"
) -> common.Teacher:
    """Both synthetic teachers as one: `audio_hint` [2048] and `visual_hint` [25, 25]."""
    source = common.weights_source(weights, random_weights, "synthetic")
    if weights:
        visual, audio, _ = load(weights)
    else:
        torch.manual_seed(0)
        visual, audio = VisualNet(DEFAULTS["visual_width"]).eval(), AudioNet().eval()
    return teacher_from_models(visual, audio, source, device=device)


def teacher_from_models(visual, audio, source: str, *, device: str = "cpu") -> common.Teacher:
    dev = common.device(device)
    visual, audio = visual.to(dev).eval(), audio.to(dev).eval()

    @torch.no_grad()
    def compute(batch):
        pcm = np.asarray(batch["audio"])
        if batch["sample_rate"] != SAMPLE_RATE:
            from teachers import panns

            pcm = np.round(panns.resample(pcm, batch["sample_rate"], SAMPLE_RATE) * 32768)
            pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
        image = torch.from_numpy(visual_input(batch["image"])).to(dev)
        return {
            "audio_hint": audio(torch.from_numpy(pcm).to(dev))[1].cpu().numpy(),
            "visual_hint": visual_hint_from_logits(visual(image)).cpu().numpy(),
        }

    shapes = {"audio_hint": (EMBEDDING_DIM,), "visual_hint": (GRID, GRID)}
    return common.Teacher("synthetic", shapes, source, ("image", "audio"), 32, compute)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teachers.synthetic",
        description="Train the synthetic world's visual and audio teachers (once).",
    )
    parser.add_argument("--out", required=True, help="the .pt to write (kept if it exists)")
    parser.add_argument("--seed", type=int, default=0)
    for key in ("visual_steps", "audio_steps", "visual_images", "audio_clips"):
        parser.add_argument(f"--{key}", type=int, default=DEFAULTS[key])
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        print(f"{args.out}: synthetic teachers already trained (delete the file to retrain)")
        return 0
    overrides = {
        k: getattr(args, k) for k in ("visual_steps", "audio_steps", "visual_images", "audio_clips")
    }
    ensure_trained(args.out, args.seed, not args.no_progress, **overrides)
    m = load(args.out)[2]["metrics"]
    print(
        f"{args.out}: synthetic teachers trained in {m['total_seconds']:.0f} s; held out: "
        f"audio accuracy {m['audio_accuracy']:.3f}, visual cell accuracy "
        f"{m['visual_cell_accuracy']:.3f}, hint mass in object boxes "
        f"{m['scene_mass_in_boxes']:.3f} ({m['scene_detected_fraction']:.0%} of scenes detected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
