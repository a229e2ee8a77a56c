"""The bad inputs of images, audio files and videos (`media_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.media_cases import AUDIO_CASES, IMAGE_CASES, VIDEO_CASES


@pytest.mark.parametrize("case", IMAGE_CASES + AUDIO_CASES + VIDEO_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
