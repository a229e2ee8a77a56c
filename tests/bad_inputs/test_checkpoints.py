"""The bad inputs of weights and checkpoints (.pth, .npz, orbax) (`checkpoints_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.checkpoints_cases import CHECKPOINT_CASES


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
