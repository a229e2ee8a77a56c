"""The bad-input suite's tables together: all of them, ids unique, expectations valid, and
docs/troubleshooting.md's table their rendering."""

import dataclasses
import re

from bad_inputs import troubleshooting
from bad_inputs.cases import SKIP, all_cases

# docs/troubleshooting.md, docs/layout.md and the README state this count (the suite prints
# it too): update them with a case.
CASE_COUNT = 109


def test_the_table_is_large_and_its_ids_unique():
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert len(ids) == CASE_COUNT
    assert all(c.expected is SKIP or issubclass(c.expected, BaseException) for c in cases)
    assert all(c.kind in troubleshooting.KINDS for c in cases)


def test_troubleshooting_page_is_the_rendering():
    """The page's generated table is exactly what the cases render, and its text states
    the case count."""
    text = troubleshooting.PAGE.read_text()
    assert troubleshooting.generated_part(text) == troubleshooting.render(), (
        f"docs/troubleshooting.md is stale: run `{troubleshooting.REGENERATE}`"
    )
    assert f"**{CASE_COUNT} cases**" in text
    assert f"bad-input suite: {CASE_COUNT} cases" in text
    # The README and docs/layout.md state the count too.
    repo = troubleshooting.PAGE.parents[1]
    readme, layout = ((repo / f).read_text().split() for f in ("README.md", "docs/layout.md"))
    assert f"{CASE_COUNT} bad inputs" in " ".join(readme)
    assert f"bad-input suite ({CASE_COUNT} cases)" in " ".join(layout)
    # One table row per case, numbered 1…N.
    rows = re.findall(r"^\| (\d+) \|", troubleshooting.generated_part(text), re.M)
    assert rows == [str(n) for n in range(1, CASE_COUNT + 1)]


def test_render_escapes_pipes_in_cells():
    """A | in a case's text would split its markdown cell."""
    case = all_cases()[0]
    table = troubleshooting.render([dataclasses.replace(case, bad="a|b")])
    row = table.splitlines()[-1]
    assert "a\\|b" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 7  # 5 cells between 6 bars
