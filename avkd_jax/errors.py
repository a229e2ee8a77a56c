"""Every error this project raises on bad input, in one place.

Each names the file, field or step at fault in its message; catching `ValueError` (or
`FileNotFoundError` for `RunError`) catches them all. Free of JAX, TensorFlow and torch, so
that `teachers/` (the PyTorch side) shares them.
"""

import os


class MediaError(ValueError):
    """A raw media or metadata file is missing, empty, truncated or corrupt.

    Attributes:
      path: the offending file (str).
      reason: what is wrong with it (str).
    """

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    # Exceptions are pickled across multiprocessing workers; the default reduction would
    # call MediaError(message) and lose `reason`.
    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class ShardError(ValueError):
    """A prepared TFRecord shard (data or hints) is missing, truncated or corrupt."""


class HintError(ValueError):
    """Hint shards are missing, misaligned with their data shards, truncated or corrupt."""


class PretrainedError(ValueError):
    """A weights file does not match the model it is loaded into."""


class RunError(FileNotFoundError):
    """A workdir holds no run that can be loaded (no config.json or no checkpoint)."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class CheckpointRestoreError(ValueError):
    """A checkpoint in the workdir cannot be restored (damaged, or another model's)."""


class CheckpointError(ValueError):
    """A (PyTorch) weights file is missing, unreadable, or not a plain tensor checkpoint."""


class ConversionError(ValueError):
    """A state_dict does not have torchvision's ResNet18 layout."""


class DatasetError(ValueError):
    """The dataset directory, config, version or split cannot be found."""


class DetrWeightsError(ValueError):
    """The DETR weights directory is missing or cannot be used here."""
