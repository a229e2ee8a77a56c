"""The bad inputs of the localize and eval entry points (`localize_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.localize_cases import LOCALIZE_CASES


@pytest.mark.parametrize("case", LOCALIZE_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
