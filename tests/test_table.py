"""Plain-text tables fitted into a width."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.table import Column, abbreviations, elide, format_table, printable

COLUMNS = [Column("run", elide=True, min_width=12), Column("status"), Column("date", drop=2),
           Column("acc", right=True), Column("model", elide=True, drop=1)]
ROWS = [["cifar10_hog_color-20261126-101500", "completed", "2026-11-26 10:15", "71.96%", "2866-256-10 relu softmax"],
        ["x", "unfinished", "2026-11-27 09:00", "-", "3-2"]]


def test_elide_keeps_both_ends():
    assert elide("cifar10_hog_color-20261126-101500", 15) == "cifar10…-101500"
    assert elide("short", 10) == "short" and elide("abc", 1) == "…" and len(elide("abcdef", 2)) == 2


def test_without_a_width_nothing_is_cut():
    lines = format_table(COLUMNS, ROWS).splitlines()
    assert lines[1].split("  ")[0] == ROWS[0][0] and lines[1].endswith(ROWS[0][4])
    assert lines[0].index("acc") + 3 == lines[1].index("71.96%") + 6       # right-aligned under the title


def test_narrow_tables_elide_first_then_drop_the_least_important_columns():
    assert "model" in format_table(COLUMNS, ROWS, 80) and "…" in format_table(COLUMNS, ROWS, 80)
    at_55 = format_table(COLUMNS, ROWS, 55).splitlines()
    assert at_55[0].split() == ["run", "status", "acc", "model"]            # date (drop=2) left out first
    assert format_table(COLUMNS, ROWS, 40).splitlines()[0].split() == ["run", "status", "acc"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(*(st.text(max_size=40 if column.elide or column.drop else 10) for column in COLUMNS))
                .map(list), max_size=6), st.integers(30, 200))
def test_any_cells_fit_any_reasonable_width(rows, width):
    """Long text in the columns that can be cut or left out, short text in the others (status, numbers)."""
    lines = format_table(COLUMNS, rows, width).split("\n")
    assert len(lines) == 1 + len(rows)
    assert all(len(line) <= width for line in lines)
    assert all(line.isprintable() for line in lines)


def test_printable_replaces_undecodable_bytes_and_control_characters():
    assert printable("bad-\udcff-name\n\x1b[31m") == "bad-\ufffd-name??[31m"


def test_abbreviations_cut_names_apart_or_give_up():
    assert abbreviations(["airplane", "automobile", "bird", "cat"]) == ["airp", "auto", "bird", "cat"]
    assert abbreviations(["maple_tree", "maple_leaf"]) == ["maple_t", "maple_l"]
    assert abbreviations(["class_1", "class_10", "class_100"]) is None
