"""TFDS builder of VGGSound / VGG-Sound Sources from a researcher's disk (EZ-VSL layout).

    manual_dir/                      (config.manual_dir; the test split may live elsewhere:
      frames/<id>.jpg                 config.test_manual_dir)
      audio/<id>.wav|.flac           or, instead of frames/ + audio/:  video/<id>.mp4
      metadata/vggss_10k.txt ...     the EZ-VSL lists and vggss.json (or config.metadata_dir)

Ids are `<youtube id>_<start second, 6 digits>`. Splits: `train` (the list in
config.dataset_kwargs.train_list, minus test ids) and `test` (vggss_test.csv: 5,158 ids,
boxes from vggss.json; whatever subset is on disk is built and the rest reported).
Built through `avkd_jax.datasets.get_builder(config)`.
"""

from avkd_jax.datasets import av_builder

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
VGGSound is not downloadable by TFDS. Get the clips from YouTube with the VGGSound list
(https://www.robots.ox.ac.uk/~vgg/data/vggsound/), the VGG-Sound Sources annotations
(vggss.json) and the id lists from EZ-VSL's metadata/ folder
(https://github.com/stoneMo/EZ-VSL). Lay them out as

  <manual_dir>/video/<id>.mp4          the 10 s clips as downloaded, or pre-extracted:
  <manual_dir>/frames/<id>.jpg         one frame per clip
  <manual_dir>/audio/<id>.wav|.flac    its sound (any rate, any channel count)
  <manual_dir>/metadata/vggss_10k.txt, vggss_144k.txt, vggss_test.csv, vggss.json

and pass --config.manual_dir=<manual_dir> (and --config.test_manual_dir when the test
clips are elsewhere). `python -m avkd_jax.datasets.report --config=...` checks a disk.
"""


class Vggsound(av_builder.RawAvBuilder):
    """VGGSound clips; test boxes of VGG-Sound Sources (every box of an entry)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
