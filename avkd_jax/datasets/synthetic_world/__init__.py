"""The procedural audio-visual world (docs/design.md, The synthetic world).

K object classes, each a visual SHAPE (colour and size random per instance, so neither
gives the class away) and a SOUND (class-specific pitch / timbre / rhythm with
per-instance jitter). A scene is a textured 256x256 background, one sounding object and
0-2 silent distractors of other classes; its audio is the sounding object's sound plus
coloured noise; its annotation is the sounding object's tight box.

Everything is a pure function of (seed, split, index): any scene can be generated alone,
in any process, and the same seed gives bit-identical files. `write_world` writes scenes
in the Flickr-SoundNet raw layout so the real TFDS builder and evaluation read them.

Box convention everywhere: [xmin, ymin, xmax, ymax] int pixels with exclusive max, i.e.
the object covers image[ymin:ymax, xmin:xmax] -- the way the Flickr evaluation paints
its ground-truth map. The shape touches all four sides of its box, so the box is tight.

Modules, one job each: `classes` (the class table), `geometry` (boxes, shape masks),
`render` (pixels), `sound` (audio), `scenes` (layout and assembly of one scene), `writer`
(a world on disk), `cli` (the command line):

    python -m avkd_jax.datasets.synthetic_world --root=DIR --num_train=N --num_test=M --seed=S
"""

from avkd_jax.datasets.synthetic_world.classes import (
    CLASS_NAMES,
    CLASSES,
    NUM_CLASSES,
    ObjectClass,
)
from avkd_jax.datasets.synthetic_world.cli import main
from avkd_jax.datasets.synthetic_world.geometry import RING_INNER, box_iou, shape_mask
from avkd_jax.datasets.synthetic_world.render import (
    IMAGE_SIZE,
    render_background,
    render_object,
)
from avkd_jax.datasets.synthetic_world.scenes import (
    ASPECT_RANGE,
    SPLIT_CODES,
    make_scene,
    scene_layout,
)
from avkd_jax.datasets.synthetic_world.sound import (
    SAMPLE_RATE,
    add_background_noise,
    synthesize_sound,
)
from avkd_jax.datasets.synthetic_world.writer import scene_id, write_world

__all__ = [
    "ASPECT_RANGE",
    "CLASSES",
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "ObjectClass",
    "RING_INNER",
    "SAMPLE_RATE",
    "SPLIT_CODES",
    "add_background_noise",
    "box_iou",
    "main",
    "make_scene",
    "render_background",
    "render_object",
    "scene_id",
    "scene_layout",
    "shape_mask",
    "synthesize_sound",
    "write_world",
]
