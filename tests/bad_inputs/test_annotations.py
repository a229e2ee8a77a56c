"""The bad inputs of id lists and annotation files (`annotations_cases.py`)."""

import pytest

from bad_inputs.annotations_cases import ANNOTATION_CASES
from bad_inputs.cases import check


@pytest.mark.parametrize("case", ANNOTATION_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
