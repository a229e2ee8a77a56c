"""The bad inputs of configs and workdirs (`config_cases.py`)."""

import pytest

from bad_inputs.cases import check
from bad_inputs.config_cases import CONFIG_CASES


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    check(case, ctx)
