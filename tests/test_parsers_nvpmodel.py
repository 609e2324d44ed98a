"""nvpmodel -q parser against shared/fixtures/nvpmodel/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.nvpmodel import parse_nvpmodel_query
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "nvpmodel"


def _listing() -> list:
    return listing("nvpmodel")


def _read(name: str) -> str:
    return read("nvpmodel", name)


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    status = parse_nvpmodel_query(path.read_bytes().decode("utf-8"))
    assert status.mode_name and status.mode_id is not None


def test_nano_5w_with_sudo() -> None:
    s = parse_nvpmodel_query(_read("nvpmodel-q-jetson-nano-5W-sudo-jetbot-issue49.txt"))
    assert (s.mode_name, s.mode_id, s.errors) == ("5W", 1, [])


def test_nano_5w_without_sudo_errors() -> None:
    s = parse_nvpmodel_query(_read("nvpmodel-q-jetson-nano-5W-nosudo-errors-jetbot-issue49.txt"))
    assert (s.mode_name, s.mode_id) == ("5W", 1)
    assert s.errors == [
        "Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13",
        "failed to read PARAM EMC: ARG MAX_FREQ: PATH /sys/kernel/nvpmodel_emc_cap/emc_iso_cap",
    ]


def test_thor_maxn() -> None:
    s = parse_nvpmodel_query(_read("nvpmodel-q-jetson-thor-MAXN-jetpack-nixos-pr460.txt"))
    assert (s.mode_name, s.mode_id) == ("MAXN", 0)


def test_errors() -> None:
    with pytest.raises(ValueError, match="NV Power Mode"):
        parse_nvpmodel_query("NVPM ERROR: Error opening /sys/x: 13\n")
    with pytest.raises(ValueError, match="surprise"):
        parse_nvpmodel_query("NV Power Mode: 5W\n1\nsurprise\n")
