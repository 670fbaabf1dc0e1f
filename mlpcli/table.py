"""Plain-text tables that fit a width: aligned columns, long cells elided in the middle ("cifar…101500"),
and when that is not enough, the least important columns left out."""

from __future__ import annotations

from dataclasses import dataclass

ELLIPSIS = "…"
GAP = "  "
SQUEEZED = 5


@dataclass
class Column:
    title: str
    right: bool = False           # right-aligned (numbers)
    elide: bool = False           # long cells may be shortened in the middle, down to `min_width`
    min_width: int = 8            # (and below it, down to SQUEEZED, only when no column is left to drop)
    drop: int = 0                 # columns with a higher rank are left out first when the table is too wide; 0: never


def printable(text: str) -> str:
    """`text` safe to print on one line: bytes of a file name that are not UTF-8 become U+FFFD,
    control characters (newlines, escape sequences) "?"."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def elide(text: str, width: int) -> str:
    """`text` cut to `width` characters by replacing its middle with an ellipsis (run names keep their
    beginning and their timestamp)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + ELLIPSIS + (text[-tail:] if tail else "")


def abbreviations(names: list[str], shortest: int = 4, longest: int = 8) -> list[str] | None:
    """Distinct column titles for `names`: each cut to the same length, the fewest characters from
    `shortest` to `longest` that keeps them apart (None when no such cut does)."""
    for length in range(shortest, longest + 1):
        cut = [name[:length] for name in names]
        if len(set(cut)) == len(names):
            return cut
    return None


def format_table(columns: list[Column], rows: list[list[str]], width: int | None = None) -> str:
    """Rows of cells (strings) under the column titles, fitted into `width` characters (None: any width)."""
    shown = list(range(len(columns)))
    while True:
        widths = _fit(columns, rows, shown, width)
        droppable = [i for i in shown if columns[i].drop]
        if widths is not None or not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    if widths is None:                        # squeeze harder; if even that is too wide, print it anyway
        widths = _fit(columns, rows, shown, width, SQUEEZED, strict=False)
    lines = []
    for cells in [[c.title for c in columns], *rows]:
        parts = []
        for i in shown:
            text = elide(printable(cells[i]), widths[i])
            parts.append(text.rjust(widths[i]) if columns[i].right else text.ljust(widths[i]))
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines)


def _fit(columns: list[Column], rows: list[list[str]], shown: list[int], width: int | None,
         floor: int | None = None, strict: bool = True) -> dict[int, int] | None:
    """Widths of the `shown` columns within `width`, or None if they cannot fit (unless not `strict`:
    then the narrowest). Elidable columns wider than a common cap are cut to it, never below their
    `min_width` (or `floor`); the cap is the largest that fits."""
    natural = {i: max([len(printable(columns[i].title)), *(len(printable(row[i])) for row in rows)]) for i in shown}
    if width is None:
        return natural

    def capped(cap: int) -> dict[int, int]:
        return {i: max(min(w, cap), min(w, columns[i].min_width if floor is None else floor))
                if columns[i].elide else w for i, w in natural.items()}

    def total(widths: dict[int, int]) -> int:
        return sum(widths.values()) + len(GAP) * (len(widths) - 1)

    low, high = 0, max(natural.values(), default=0)
    if total(capped(low)) > width:
        return None if strict else capped(low)
    while low < high:                         # the largest cap that fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if total(capped(middle)) <= width else (low, middle - 1)
    return capped(low)
