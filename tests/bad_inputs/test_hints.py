"""The bad inputs of teacher hint shards and their specs (`hints_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.hints_cases import HINT_CASES


@pytest.mark.parametrize("case", HINT_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
