"""The bad inputs of prepared TFRecord shards (`tfrecords_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.tfrecords_cases import TFRECORD_CASES


@pytest.mark.parametrize("case", TFRECORD_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
