"""The bad-input suite (issue #7): every input the project reads, spoiled the ways disks
and downloads spoil it, and the clear error (or the documented skip) each one gets.

One table of `cases.Case`s per stage the input reaches (`<stage>_cases.py`), run by
`test_<stage>.py`; `cases.py` holds the Case record, the check every case gets and the
makers the stages share; `test_table.py` checks all the tables together.
"""
