"""The synthetic world's "ImageNet" ResNet18: the stand-in for torchvision's pretrained one.

In the paper the visual student starts from an ImageNet-classification ResNet18 and the
object-guided inference reads that network's layer4 map (docs/design.md, Model and losses; Evaluation). The synthetic
world has no ImageNet, so this trains its stand-in: a ResNet18 with the student's layout
(`torch_resnet.resnet18(width=...)`) classifying the world's labelled single objects into
its 8 classes, a different task on different images (a seed stream of their own) from the
students' and the teachers'. Images are made at the world's 256², resized as the students'
are (bicubic, antialiased; train: a random crop of a slightly larger resize and a random
flip), normalised with ImageNet's mean and std as the students normalise theirs.

    python -m teachers.synthetic_pretrain --out=data/synthetic_resnet18.npz

writes the trunk (fc dropped) as the `.npz` that `avkd_jax.pretrained.load_resnet18_npz(
path, width=0.25)` reads, and `<out>.json` beside it with the settings and the held-out
accuracy; `ensure_trained(path)` trains only when the file is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from avkd_jax import files
from avkd_jax.datasets import synthetic_world as world
from teachers import common, convert_resnet, synthetic_data, torch_resnet

FORMAT = "avkd-synthetic-imagenet-resnet18"
VERSION = 1
# `avkd_jax.models.image_input`'s constants (that module imports jax).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Train images are resized to this multiple of `image_size` and randomly cropped back, as
# the students' 246 → 224 (`config.resize_size`).
RESIZE_RATIO = 246 / 224

DEFAULTS = {
    "width": 0.25,
    "image_size": 112,
    "images": 6000,
    "steps": 600,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "heldout_images": 1000,
}


def resize_size(image_size: int) -> int:
    return round(image_size * RESIZE_RATIO)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (TensorFlow's 'bicubic')."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1
    far = ((-0.5 * x + 2.5) * x - 4) * x + 2
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]`: each output pixel's weights over the input pixels of one axis.

    Half-pixel centres; when shrinking, the kernel is widened by the shrink factor
    (antialiasing); taps outside the image are dropped and each row renormalised.
    """
    scale = n_out / n_in
    widen = max(1.0 / scale, 1.0)
    centres = (np.arange(n_out) + 0.5) / scale
    w = _keys_cubic((np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / widen)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[B, H, W, C]` → uint8 `[B, size, size, C]`: the students' image resize.

    `avkd_jax.input_pipeline` resizes with `tf.image.resize(bicubic, antialias=True)` and
    rounds; this is that computation in numpy (equal but for a rare ±1 of float rounding),
    so that the data workers need neither jax nor a TensorFlow runtime. PIL's bicubic is no
    substitute: it rounds and clips between its two passes, up to 6 levels off at the
    objects' sharp edges.
    """
    b, h, w, c = images.shape
    # Two plain 2-D products: numpy's broadcast batched `@` is much slower.
    x = images.astype(np.float32).transpose(1, 0, 2, 3).reshape(h, b * w * c)
    x = (resize_weights(h, size) @ x).reshape(size, b, w, c)
    x = x.transpose(0, 1, 3, 2).reshape(size * b * c, w) @ resize_weights(w, size).T
    out = x.reshape(size, b, c, size).transpose(1, 0, 3, 2)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _make_objects(task):
    stream, start, stop, seed, size = task
    made = [synthetic_data.labelled_object(stream, i, seed) for i in range(start, stop)]
    classes = np.asarray([cls for _, cls, _ in made], np.int64)
    return resize(np.stack([image for image, _, _ in made]), size), classes


def generate(sets, seed: int, workers=None, progress=False) -> list:
    """Labelled single objects, the same whatever the number of worker processes.

    Args:
      sets: (stream, count, size) triples, all made by one pool of workers.
      seed: the seed of the labelled-data namespace (`synthetic_data.NAMESPACE + seed`).

    Returns:
      per set, (uint8 images `[count, size, size, 3]`, int64 classes `[count]`).
    """
    chunk = 64
    tasks = [
        (stream, s, min(s + chunk, count), seed, size)
        for stream, count, size in sets
        for s in range(0, count, chunk)
    ]
    parts = iter(synthetic_data.map_chunks(_make_objects, tasks, workers, progress, "objects"))
    out = []
    for _, count, _ in sets:
        mine = [next(parts) for _ in range(0, count, chunk)]
        out.append((np.concatenate([p[0] for p in mine]), np.concatenate([p[1] for p in mine])))
    return out


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 `[B, H, W, 3]` → ImageNet-normalised float32 `[B, 3, H, W]`."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 `[B, R, R, 3]` → `[B, size, size, 3]`: a random crop each, half of them flipped."""
    b, r = images.shape[0], images.shape[1]
    offsets = torch.randint(0, r - size + 1, (b, 2), generator=gen).tolist()
    flips = (torch.rand(b, generator=gen) < 0.5).tolist()
    out = []
    for image, (y, x), flip in zip(images, offsets, flips):
        crop = image[y : y + size, x : x + size]
        out.append(crop.flip(1) if flip else crop)
    return torch.stack(out)


def _train(model, images, classes, hp, seed, progress):
    """Adam at a constant rate over `steps` batches drawn by a seeded permutation."""
    from avkd_jax import terminal

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"])
    model.train()
    order, pos = torch.randperm(len(images), generator=gen), 0
    with terminal.progress_bar(
        total=hp["steps"],
        desc="ResNet18 pretraining",
        disable=not progress,
        leave=False,
    ) as bar:
        for _ in range(hp["steps"]):
            if pos + hp["batch_size"] > len(order):
                order, pos = torch.randperm(len(images), generator=gen), 0
            idx = order[pos : pos + hp["batch_size"]]
            pos += hp["batch_size"]
            x = normalize(augment(images[idx], hp["image_size"], gen))
            loss = F.cross_entropy(model(x), classes[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    return model.eval()


@torch.no_grad()
def accuracy(model, images: np.ndarray, classes: np.ndarray, batch_size: int = 128) -> float:
    """Top-1 accuracy of `model` (eval mode) on uint8 images `[N, H, W, 3]`."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(normalize(torch.from_numpy(images[i : i + batch_size])))
        correct += int((logits.argmax(1).numpy() == classes[i : i + batch_size]).sum())
    return correct / max(len(images), 1)


def train(
    seed: int = 0, progress: bool = True, workers=None, **overrides
) -> tuple[torch.nn.Module, dict]:
    """Trains the classifier; returns it (eval mode) and its record (settings, numbers).

    `workers` (default: one per core) only changes how fast the images are made.
    """
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown synthetic-pretraining settings {sorted(unknown)}")
    hp = dict(DEFAULTS, **overrides)
    for key, value in hp.items():
        if not value > 0:
            raise ValueError(f"synthetic pretraining: {key}={value!r} must be positive")
    start, cpu_start = time.time(), time.process_time()
    common.use_all_cores()
    size = hp["image_size"]
    (images, classes), (heldout, heldout_classes) = generate(
        [
            ("object_train", hp["images"], resize_size(size)),
            ("object_heldout", hp["heldout_images"], size),
        ],
        seed,
        workers,
        progress,
    )
    data_s = time.time() - start

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = torch_resnet.resnet18(num_classes=world.NUM_CLASSES, width=hp["width"])
        inputs, targets = torch.from_numpy(images), torch.from_numpy(classes)
        model = _train(model, inputs, targets, hp, seed, progress)
        train_s = time.time() - start - data_s
        heldout_accuracy = accuracy(model, heldout, heldout_classes)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "seed": seed,
        "hparams": dict(hp, resize_size=resize_size(size)),
        "classes": list(world.CLASS_NAMES),
        "heldout_accuracy": heldout_accuracy,
        "trunk_parameters": sum(
            p.numel() for n, p in model.named_parameters() if not n.startswith("fc.")
        ),
        "data_seconds": data_s,
        "train_seconds": train_s,
        "total_seconds": time.time() - start,
        "cpu_seconds": time.process_time() - cpu_start,  # This process; data workers not included.
        "threads": torch.get_num_threads(),
    }
    return model, record


def metadata_path(path: str) -> str:
    return f"{path}.json"


def save(model: torch.nn.Module, record: dict, path: str) -> None:
    """`<path>.json`, then the trunk's `.npz` (fc dropped), each by temp-then-rename; the
    `.npz` comes last, so its presence means both are complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_text(metadata_path(path), json.dumps(record, indent=1))
    convert_resnet.save_npz(path, convert_resnet.torchvision_to_flax(model.state_dict()))


def ensure_trained(
    path: str, seed: int = 0, progress: bool = True, workers=None, **overrides
) -> str:
    """`path`, training the ResNet18 into it first when the file is missing."""
    if not os.path.exists(path):
        save(*train(seed, progress, workers, **overrides), path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teachers.synthetic_pretrain",
        description="Pretrain the synthetic world's stand-in for the ImageNet ResNet18 (once).",
    )
    parser.add_argument("--out", required=True, help="the .npz to write (kept if it exists)")
    parser.add_argument("--width", type=float, default=DEFAULTS["width"])
    parser.add_argument("--image_size", type=int, default=DEFAULTS["image_size"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--images", type=int, default=DEFAULTS["images"])
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        print(f"{args.out}: synthetic ResNet18 already trained (delete the file to retrain)")
        return 0
    overrides = {k: getattr(args, k) for k in ("width", "image_size", "steps", "images")}
    try:
        ensure_trained(args.out, args.seed, not args.no_progress, **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with open(metadata_path(args.out)) as f:
        m = json.load(f)
    print(
        f"{args.out}: synthetic ResNet18 (width {args.width:g}, {args.image_size}²) trained in "
        f"{m['total_seconds']:.0f} s; held-out accuracy {m['heldout_accuracy']:.3f} "
        f"({m['hparams']['heldout_images']} images)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
