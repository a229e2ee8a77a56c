"""The bad-input suite's tables together: all of them, ids unique, expectations valid."""

from bad_inputs.cases import SKIP, all_cases

# The README's count (Troubleshooting; the suite prints it too): update both with a case.
CASE_COUNT = 109


def test_the_table_is_large_and_its_ids_unique():
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert len(ids) == CASE_COUNT
    assert all(c.expected is SKIP or issubclass(c.expected, BaseException) for c in cases)
