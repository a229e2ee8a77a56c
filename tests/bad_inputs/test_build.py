"""The bad inputs of dataset builds (bad clips skipped and reported) (`build_cases.py`)."""

import pytest

from bad_inputs.build_cases import BUILD_CASES
from bad_inputs.cases import check


@pytest.mark.parametrize("case", BUILD_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
