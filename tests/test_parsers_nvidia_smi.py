"""nvidia-smi --query-gpu CSV parser against shared/fixtures/nvidia-smi/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.nvidia_smi import canonical_field, parse_query_gpu
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "nvidia-smi"
QUERY = [
    "index",
    "temperature.gpu",
    "utilization.gpu",
    "utilization.memory",
    "fan.speed",
    "pstate",
    "power.draw",
    "clocks.sm",
    "clocks.mem",
    "clocks.gr",
]


def _listing() -> list:
    return listing("nvidia-smi")


def _read(name: str) -> str:
    return read("nvidia-smi", name)


SAMPLE = "query-gpu-csv-with-units-driver520-ksysguard-gpu-issue27.txt"


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    rows = parse_query_gpu(path.read_bytes().decode("utf-8"))
    assert rows and all(None not in row for row in rows)


def test_csv_with_header_and_units() -> None:
    rows = parse_query_gpu(_read(SAMPLE))
    assert len(rows) == 13
    assert rows[0] == {
        "index": 0,
        "temperature.gpu": 56,
        "utilization.gpu": 26,
        "utilization.memory": 4,
        "fan.speed": 34,
        "pstate": "P3",
        "power.draw": 83.92,
        "clocks.current.sm": 1320,
        "clocks.current.memory": 5001,
        "clocks.current.graphics": 1320,
    }
    assert rows[-1]["power.draw"] == 83.43 and rows[9]["clocks.current.sm"] == 1185


def test_alias_lookup_by_query_names() -> None:
    rows = parse_query_gpu(_read(SAMPLE), QUERY)
    assert rows[1]["clocks.sm"] == 1470 and rows[1]["clocks.mem"] == 5001
    assert rows[1]["power.draw"] == 78.22
    with pytest.raises(ValueError, match="does not match"):
        parse_query_gpu(_read(SAMPLE), ["index", "name"])


def test_noheader_nounits_variant() -> None:
    # Derived from the fixture: drop the header and the unit suffixes, which is what
    # --format=csv,noheader,nounits prints for the same query.
    lines = _read(SAMPLE).splitlines()[1:]
    for unit in (" %", " W", " MHz"):
        lines = [line.replace(unit, "") for line in lines]
    rows = parse_query_gpu("\n".join(lines), QUERY, header=False)
    assert rows == parse_query_gpu(_read(SAMPLE), QUERY)
    with pytest.raises(ValueError, match="query field names"):
        parse_query_gpu("\n".join(lines), header=False)
    with pytest.raises(ValueError, match="values for"):
        parse_query_gpu("0, 56\n", QUERY, header=False)


def test_agent_query_fields_and_text_values() -> None:
    fields = [
        "name",
        "driver_version",
        "clocks.sm",
        "clocks.mem",
        "clocks.max.sm",
        "memory.used",
        "memory.total",
        "power.draw",
    ]
    assert [canonical_field(f) for f in fields] == [
        "name",
        "driver_version",
        "clocks.current.sm",
        "clocks.current.memory",
        "clocks.max.sm",
        "memory.used",
        "memory.total",
        "power.draw",
    ]
    assert canonical_field("clocks.current.sm [MHz]") == "clocks.current.sm"
    assert canonical_field("memory.used [MiB]") == "memory.used"
    # Typing rules on a noheader,nounits row shaped like the agent's query.  No real
    # sample of this query exists (see fixtures README); values here only exercise the
    # conversion of text, N/A and numeric cells.
    (row,) = parse_query_gpu(
        "GPU X, 520.56, 1320, 5001, [N/A], 100, 200, 83.92\n", fields, header=False
    )
    assert row["driver_version"] == "520.56" and row["name"] == "GPU X"
    assert (
        row["clocks.max.sm"] is None and row["memory.total"] == 200 and row["power.draw"] == 83.92
    )
