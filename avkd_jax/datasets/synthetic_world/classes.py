"""The world's object classes: what each looks like and how it sounds."""

from __future__ import annotations

import dataclasses

__all__ = ["CLASSES", "CLASS_NAMES", "NUM_CLASSES", "ObjectClass", "check_class"]


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    """One class of the world: what it looks like and how it sounds.

    Attributes:
      name: class name.
      shape: key into the shape table (drawn by `render_object`).
      sound: key into the sound-recipe table (used by `synthesize_sound`).
      f0: the recipe's characteristic frequency in Hz (pitch, partial base or band centre).
      rate: the recipe's rhythm / modulation rate in Hz.
    """

    name: str
    shape: str
    sound: str
    f0: float
    rate: float


# The class table: the one place that defines the world's classes. Pitches are spread
# over octaves and recipes differ in kind (harmonic / inharmonic / noise, steady /
# pulsed / swept) so the classes stay apart even with +-6 % pitch jitter and noise.
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("bell", "disc", "bell", 520.0, 1.6),
    ObjectClass("engine", "square", "engine", 95.0, 11.0),
    ObjectClass("whistle", "triangle", "whistle", 1500.0, 5.5),
    ObjectClass("drum", "cross", "drum", 70.0, 2.4),
    ObjectClass("siren", "ring", "siren", 900.0, 0.6),
    ObjectClass("rain", "star", "rain", 4000.0, 0.3),
    ObjectClass("bird", "diamond", "bird", 2600.0, 5.0),
    ObjectClass("horn", "hexagon", "horn", 230.0, 4.0),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)


def check_class(cls: int) -> ObjectClass:
    """The ObjectClass of class index `cls`; ValueError outside [0, NUM_CLASSES)."""
    if not 0 <= int(cls) < NUM_CLASSES:
        raise ValueError(f"class index {cls} out of range [0, {NUM_CLASSES})")
    return CLASSES[int(cls)]
