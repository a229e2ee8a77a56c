"""TFDS builder of Flickr-SoundNet from a researcher's disk (LVS / EZ-VSL layout).

    manual_dir/                      (config.manual_dir; the test split may live elsewhere:
      frames/<id>.jpg                 config.test_manual_dir)
      audio/<id>.wav|.flac           or, instead of frames/ + audio/:  video/<id>.mp4
      Annotations/<id>.xml           test clips: one <bbox> per annotator, 256×256 pixels
      metadata/flickr_10k.txt ...    the EZ-VSL lists (or config.metadata_dir)

Splits: `train` (the list in config.dataset_kwargs.train_list, minus test ids) and `test`
(flickr_test.csv: 249 ids and their keyframes; the original 250-id list works too).
Built through `avkd_jax.datasets.get_builder(config)`.
"""

from avkd_jax.datasets import av_builder

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Flickr-SoundNet is not downloadable by TFDS. Get the clips from the SoundNet Flickr
release (https://github.com/cvondrick/soundnet) or the preprocessed frames and audio the
LVS / EZ-VSL authors distribute (https://github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way,
https://github.com/stoneMo/EZ-VSL), the test annotations (Annotations/<id>.xml) with
them, and the id lists from EZ-VSL's metadata/ folder. Lay them out as

  <manual_dir>/frames/<id>.jpg         one frame per clip
  <manual_dir>/audio/<id>.wav|.flac    its sound (any rate, any channel count)
  <manual_dir>/video/<id>.mp4          or the raw clip instead of frames/ and audio/
  <manual_dir>/Annotations/<id>.xml    test clips
  <manual_dir>/metadata/flickr_10k.txt, flickr_144k.txt, flickr_test.csv

and pass --config.manual_dir=<manual_dir> (and --config.test_manual_dir when the test
clips are elsewhere). `python -m avkd_jax.datasets.report --config=...` checks a disk.
"""


class FlickrSoundnet(av_builder.RawAvBuilder):
    """Flickr-SoundNet: Flickr videos' frames and sounds; test boxes from 3 annotators."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
