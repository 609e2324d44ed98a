"""adb devices / getprop parsers against shared/fixtures/adb/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.adb import parse_adb_devices, parse_getprop, parse_getprop_reply, phone_info
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "adb"


def _listing() -> list:
    return listing("adb")


def _read(name: str) -> str:
    return read("adb", name)


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    if path.name.startswith("adb-devices"):
        devices = parse_adb_devices(text)
        assert devices and all(d.state == "device" and d.transport_id for d in devices)
    elif path.name.startswith("getprop-ro."):  # one `getprop KEY` reply per line
        assert all(parse_getprop_reply(line) for line in text.splitlines())
    elif path.name.startswith("getprop-"):
        assert parse_getprop(text)
    else:
        pytest.fail(f"no parser wired for new adb fixture {path.name}")


def test_devices_huawei_with_header() -> None:
    (d,) = parse_adb_devices(_read("adb-devices-l-huawei-ALP-AL00-goadb-issue2.txt"))
    assert (d.serial, d.state) == ("UYT5T18414003349", "device")
    assert d.properties == {
        "usb": "1114112X",
        "product": "ALP-AL00",
        "model": "ALP_AL00",
        "device": "HWALP",
        "transport_id": "23",
    }
    assert d.transport_id == 23 and not d.is_tcp and d.ready


def test_devices_samsung_and_tcp_device() -> None:
    usb, tcp = parse_adb_devices(
        _read("adb-devices-l-samsung-SM-S918B-plus-tcp-proxy-adb-proxy-pr31.txt")
    )
    assert usb.serial == "RQCWB06ZY2X" and usb.properties["model"] == "SM_S918B"
    assert usb.properties["usb"] == "3-5.3.2" and usb.properties["device"] == "dm3q"
    assert (tcp.serial, tcp.state, tcp.properties) == (
        "127.0.0.1:34381",
        "device",
        {"transport_id": "33"},
    )
    assert tcp.is_tcp and tcp.transport_id == 33


def test_devices_xiaomi_line() -> None:
    (d,) = parse_adb_devices(_read("adb-devices-l-xiaomi-alioth-line-adb_client-pr94.txt"))
    assert (d.serial, d.properties["usb"], d.properties["model"]) == (
        "n311r05e",
        "0-1.5",
        "M2012K11AC",
    )
    assert d.transport_id == 58


def test_devices_multiword_state() -> None:
    line = "UYT5T18414003349       no permissions (missing udev rules?) usb:1114112X transport_id:2"
    (d,) = parse_adb_devices(line)
    assert d.state == "no permissions (missing udev rules?)"
    assert d.properties == {"usb": "1114112X", "transport_id": "2"}
    with pytest.raises(ValueError, match="SERIAL STATE"):
        parse_adb_devices("lonely\n")


def test_getprop_indented_dump_nexus5() -> None:
    props = parse_getprop(_read("getprop-dump-nexus5-android5.1-flutter-issue4009-indented.txt"))
    assert len(props) == 27
    assert props["ro.board.platform"] == "msm8974"
    assert props["ro.build.date"] == "Tue Jan  6 22:40:00 UTC 2015"  # inner spaces kept
    info = phone_info(props)
    assert (info.soc_model, info.soc_source) == ("msm8974", "ro.board.platform")
    assert (info.android_version, info.android_version_source) == ("5.1", "ro.build.fingerprint")
    assert info.device == "hammerhead" and info.model is None and info.sdk_level is None


def test_getprop_grep_with_elisions_nexus6p() -> None:
    props = parse_getprop(_read("getprop-grep-nexus6p-android8.1-qcsuper-issue24.txt"))
    assert "..." not in props and len(props) == 26
    assert props["gsm.version.ril-impl"] == "Qualcomm RIL 1.0"
    assert props["ro.boot.hardware"] == "angler"
    info = phone_info(props)
    assert info.android_version == "8.1.0"
    assert info.soc_model is None  # ro.boot.hardware is a codename, not a SoC
    assert info.device == "angler"


def test_single_property_replies() -> None:
    replies = _read("getprop-ro.soc.model-pixel10-9-8-7-6-cpuinfo-pr382.txt").splitlines()
    assert [parse_getprop_reply(r) for r in replies] == [
        "Tensor G5",
        "Tensor G4",
        "Tensor G3",
        "GS201",
        "Tensor",
    ]
    assert parse_getprop_reply(replies[3] + "\r\n") == "GS201"  # adb shell CRLF
    line = _read("getprop-ro.soc.model-line-galaxy-z-flip4-cpuinfo-issue114.txt")
    assert parse_getprop_reply(line) == "SM8475"
    assert parse_getprop(line) == {"ro.soc.model": "SM8475"}
    assert parse_getprop_reply("\n") is None
    with pytest.raises(ValueError, match="one line"):
        parse_getprop_reply("a\nb\n")


def test_phone_info_prefers_soc_model() -> None:
    props = parse_getprop(_read("getprop-ro.soc.model-line-galaxy-z-flip4-cpuinfo-issue114.txt"))
    props["ro.board.platform"] = "taro"  # the same thread reports this for the Z Flip 4
    info = phone_info(props)
    assert (info.soc_model, info.soc_source) == ("SM8475", "ro.soc.model")
    with pytest.raises(ValueError, match=r"\[key\]"):
        parse_getprop("ro.soc.model=SM8475\n")
