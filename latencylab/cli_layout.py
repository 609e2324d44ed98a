"""Tables that read at any terminal width: columns dropped by rank, never a truncated cell.

A table is given as columns (each with a ``rank``: 0 is always shown, higher ranks are dropped
first when the terminal is narrow) and rows of rich-markup strings. Every shown column gets its
natural width and ``no_wrap``, so a number is never cut ("18.0…"); what does not fit is left
out (``wide`` keeps every column and widens the output instead), and when not even the rank-0
columns fit, each row is printed as a stacked block of ``header value`` items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 3
"""Cells are 3 characters apart (padding, separator, padding); the table has no outer edge."""


@dataclass(frozen=True)
class Col:
    header: str
    rank: int = 0
    numeric: bool = False
    constant_in_title: bool = False
    """Left out and named in the title when every row has the same value (unless wide)."""


def _width(cell: str) -> int:
    return max((Text.from_markup(line).cell_len for line in cell.split("\n")), default=0)


def _natural(cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max([_width(c.header)] + [_width(r[i]) for r in rows]) for i, c in enumerate(cols)]


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * max(0, len(widths) - 1)


def choose(
    cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, wide: bool = False
) -> list[int] | None:
    """Indices of the columns to show within ``width`` (all of them when ``wide``); dropped:
    the highest rank first, the rightmost first among equals. None: not even rank 0 fits."""
    keep = list(range(len(cols)))
    if wide:
        return keep
    natural = _natural(cols, rows)
    droppable = sorted((i for i in keep if cols[i].rank > 0), key=lambda i: (cols[i].rank, i))
    while _total([natural[i] for i in keep]) > width:
        if not droppable:
            return None
        keep.remove(droppable.pop())
    return keep


@dataclass
class Layout:
    """What :func:`render` decided: a table, or stacked blocks, and the width it needs."""

    table: Table | None
    blocks: list[Text]
    width: int


def render(
    title: str,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    width: int,
    wide: bool = False,
) -> Layout:
    cols = list(cols)
    rows = [list(r) for r in rows]
    if not wide and rows:
        same = [
            i for i, c in enumerate(cols) if c.constant_in_title and len({r[i] for r in rows}) == 1
        ]
        if same:
            title += ": " + ", ".join(f"{cols[i].header} {rows[0][i]}" for i in same)
            cols = [c for i, c in enumerate(cols) if i not in same]
            rows = [[v for i, v in enumerate(r) if i not in same] for r in rows]
    keep = choose(cols, rows, width, wide)
    if keep is None:
        return Layout(None, _stacked(title, cols, [list(r) for r in rows], width), width)
    natural = _natural(cols, rows)
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left"
    )
    for i in keep:
        c = cols[i]
        table.add_column(
            c.header,
            justify="right" if c.numeric else "left",
            no_wrap=True,
            min_width=natural[i],
        )
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return Layout(table, [], max(width, _total([natural[i] for i in keep])))


def _fill(items: list[Text], width: int, indent: str = "  ") -> list[Text]:
    """Items two spaces apart in lines of at most ``width`` cells; an item is never split
    (one longer than a line gets a line of its own, folded by the console)."""
    lines: list[Text] = []
    line: Text | None = None
    for item in items:
        if line is not None and line.cell_len + 2 + item.cell_len > width:
            lines.append(line)
            line = None
        line = (
            Text.assemble(indent if lines else "", item)
            if line is None
            else (Text.assemble(line, "  ", item))
        )
    if line is not None:
        lines.append(line)
    return lines


def _stacked(title: str, cols: list[Col], rows: list[list[str]], width: int) -> list[Text]:
    """One block per row: the rank-0 values first, then ``header value`` items, filled into
    lines of at most ``width`` cells."""
    out = [Text(title, style="italic")]
    for r in rows:
        head = [Text.from_markup(r[i]) for i, c in enumerate(cols) if c.rank == 0]
        out.extend(_fill(head, width))
        items = [
            Text.assemble((c.header + " ", "dim"), Text.from_markup(r[i]))
            for i, c in enumerate(cols)
            if c.rank > 0 and Text.from_markup(r[i]).plain.strip()
        ]
        out.extend(Text.assemble("  ", line) for line in _fill(items, width - 2, indent=""))
    return out


def show(console: Console, layout: Layout) -> None:
    """Print a layout: a table wider than the console (``wide``) gets its own width."""
    if layout.table is None:
        for block in layout.blocks:
            console.print(block, overflow="fold")
        return
    if layout.width > console.width:
        Console(width=layout.width, file=console.file, force_terminal=console.is_terminal).print(
            layout.table
        )
        return
    console.print(layout.table)


def print_table(
    console: Console,
    title: str,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    wide: bool = False,
) -> None:
    show(console, render(title, cols, rows, console.width, wide))
