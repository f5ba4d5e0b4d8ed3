"""Small-number suppression (marketplace/disclosure.py): pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.disclosure import Sum, suppress


def test_counts_under_five_are_hidden_zero_included() -> None:
    assert suppress({"a": 0, "b": 4, "c": 5, "d": 120}) == {"a", "b"}


def test_a_total_would_reveal_a_single_hidden_part_so_the_smallest_other_part_goes_too() -> None:
    cells = {"01": 3, "03": 9, "05": 40, "all": 52}
    hidden = suppress(cells, [Sum("all", ("01", "03", "05"))])
    assert hidden == {"01", "03"}  # 52 - 40 no longer tells 01 apart from 03


def test_a_sum_with_no_other_part_to_hide_hides_its_total() -> None:
    assert suppress({"01": 2, "all": 2}, [Sum("all", ("01",))]) == {"01", "all"}
    assert suppress({"01": 7, "all": 7}, [Sum("all", ("01",))]) == set()


def test_a_small_total_and_its_small_parts_are_all_hidden() -> None:
    cells = {"01": 0, "03": 3, "all": 3}
    assert suppress(cells, [Sum("all", ("01", "03"))]) == {"01", "03", "all"}


def test_complementary_hiding_carries_across_sums_sharing_a_cell() -> None:
    # Rows and their total by care area, and a column total: hiding in one sum can expose another.
    cells = {("01", "a"): 2, ("01", "b"): 30, ("01", "*"): 32,
             ("03", "a"): 8, ("03", "b"): 6, ("03", "*"): 14}
    sums = [Sum(("01", "*"), (("01", "a"), ("01", "b"))), Sum(("03", "*"), (("03", "a"), ("03", "b")))]
    hidden = suppress(cells, sums)
    assert hidden == {("01", "a"), ("01", "b")}


def test_a_negative_count_is_refused_naming_the_cell() -> None:
    with pytest.raises(ValueError, match="cell 'x'"):
        suppress({"x": -1})


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8),
       st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8))
def test_no_small_count_is_shown_and_no_sum_has_exactly_one_hidden_cell(row_a: list[int], row_b: list[int]) -> None:
    cells: dict[str, int] = {}
    sums: list[Sum[str]] = []
    for name, row in (("a", row_a), ("b", row_b)):
        parts = tuple(f"{name}{i}" for i in range(len(row)))
        cells.update(zip(parts, row, strict=True))
        cells[f"{name}*"] = sum(row)
        sums.append(Sum(f"{name}*", parts))
    hidden = suppress(cells, sums)
    assert all(v >= 5 for k, v in cells.items() if k not in hidden)
    for s in sums:
        assert len([k for k in (s.total, *s.parts) if k in hidden]) != 1
