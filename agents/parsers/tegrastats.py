"""Parse NVIDIA Jetson ``tegrastats`` lines (TX1 L4T 28 up to Orin / JetPack 6).

One line is one sample.  The line is read left to right as a sequence of fields;
every field form seen in real output is handled:

* optional ``MM-DD-YYYY HH:MM:SS`` timestamp prefix (JetPack 6),
* ``RAM u/tMB (lfb NxSMB)``, ``SWAP u/tMB (cached cMB)``, ``IRAM u/tkB(lfb NkB)``,
* ``CPU [l%@f,off,...]`` or the TX1 form ``cpu [l%,l%,...]@f``,
* ``NAME l%@f`` / ``NAME l%`` / ``NAME l%@[f,f]`` (EMC_FREQ, EMC, GR3D_FREQ, GR3D,
  NVENC, NVDEC, VIC ...), ``NAME f`` / ``NAME off`` (APE, VIC_FREQ, NVJPG ...),
* ``MTS fg x% bg y%`` (TX2),
* temperatures ``NAME@xxC`` (any case; ``-256C`` means "sensor off" and becomes ``None``),
* power rails ``NAME cur/avg`` or ``NAME curmW/avgmW``.

**Unitless rails rule:** L4T <= 32 (TX2, Nano, Xavier JP4) prints rails as bare
``cur/avg`` integers.  tegrastats always reports rails in milliwatts, so bare values
are taken as mW.  Rail names repeated on one line (Orin AGX prints ``NC`` twice) are
kept with a ``#2``, ``#3`` ... suffix so nothing is dropped.

**Total power rule:** the current value of the first present input rail among
:data:`INPUT_RAILS`.  AGX Orin has no single input channel, so for it the total is the
sum of ``VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0`` (the module's first INA3221).
Other rail sets (Xavier AGX JP4, TX1) give ``None``; pass explicit rails to
:func:`summarize_power` there.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "INPUT_RAILS",
    "CpuCore",
    "Engine",
    "PowerSummary",
    "Rail",
    "TegrastatsSample",
    "energy_per_inference_mj",
    "parse_tegrastats",
    "parse_tegrastats_line",
    "summarize_power",
]

#: Single rails that measure the whole module input, in priority order.
INPUT_RAILS: tuple[str, ...] = ("VDD_IN", "POM_5V_IN")
#: Rails whose sum is the module power where no single input rail exists (AGX Orin).
SUMMED_INPUT_RAILS: tuple[tuple[str, ...], ...] = (("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),)

OFF_SENSOR_C = -256.0

_NAME = r"([A-Za-z][A-Za-z0-9_]*)"
_END = r"(?=\s|$)"
_TS = re.compile(r"(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})")
_RAM = re.compile(r"RAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?" + _END)
_SWAP = re.compile(r"SWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?" + _END)
_IRAM = re.compile(r"IRAM (\d+)/(\d+)kB ?(?:\(lfb (\d+)kB\))?" + _END)
_CPU = re.compile(r"(?:CPU|cpu) \[([^\]]*)\](?:@(\d+))?" + _END)
_MTS = re.compile(r"MTS fg (\d+)% bg (\d+)%" + _END)
_TEMP = re.compile(_NAME + r"@(-?\d+(?:\.\d+)?)C" + _END)
_RAIL = re.compile(_NAME + r" (\d+)(?:mW)?/(\d+)(?:mW)?" + _END)
_LOAD = re.compile(_NAME + r" (\d+)%(?:@(\[[\d,]*\]|\d+))?" + _END)
_FREQ = re.compile(_NAME + r" (\d+|off)" + _END)
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")


class Rail(NamedTuple):
    """One power rail reading: (current_mw, average_mw)."""

    current_mw: float
    average_mw: float


@dataclass(frozen=True)
class CpuCore:
    index: int
    load_pct: float | None  # None when the core is off
    freq_mhz: int | None  # None when the core is off or no frequency is printed


@dataclass(frozen=True)
class Engine:
    """A hardware engine field such as APE, NVENC, VIC (``off`` gives enabled=False)."""

    load_pct: float | None
    freq_mhz: int | None
    enabled: bool = True


@dataclass
class TegrastatsSample:
    raw: str
    timestamp: datetime | None = None
    ram_used_mb: int = 0
    ram_total_mb: int = 0
    ram_lfb_blocks: int | None = None
    ram_lfb_block_mb: int | None = None
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    swap_cached_mb: int | None = None
    iram_used_kb: int | None = None
    iram_total_kb: int | None = None
    cpus: list[CpuCore] = field(default_factory=list)
    emc_pct: float | None = None
    emc_freq_mhz: int | None = None
    gpu_pct: float | None = None
    gpu_freq_mhz: tuple[int, ...] = ()  # Orin prints one value per GPC: ``@[0,0]``
    mts_fg_pct: float | None = None
    mts_bg_pct: float | None = None
    engines: dict[str, Engine] = field(default_factory=dict)
    temperatures_c: dict[str, float | None] = field(default_factory=dict)
    rails: dict[str, Rail] = field(default_factory=dict)
    total_power_mw: float | None = None
    total_power_source: str | None = None

    def temperature(self, name: str) -> float | None:
        """Case-insensitive temperature lookup (Orin Nano prints ``cpu@``, AGX ``CPU@``)."""
        for key, value in self.temperatures_c.items():
            if key.lower() == name.lower():
                return value
        raise KeyError(name)


def _error(line: str, pos: int, why: str) -> ValueError:
    return ValueError(f"tegrastats: {why} at column {pos}: {line!r}")


def _load_freq(match: re.Match[str]) -> tuple[float, tuple[int, ...]]:
    freq = match.group(3)
    if freq is None:
        freqs: tuple[int, ...] = ()
    elif freq.startswith("["):
        freqs = tuple(int(f) for f in freq.strip("[]").split(",") if f)
    else:
        freqs = (int(freq),)
    return float(match.group(2)), freqs


def _parse_cpus(line: str, body: str, group_freq: str | None) -> list[CpuCore]:
    cores = []
    for index, item in enumerate(body.split(",")):
        item = item.strip()
        if item == "off":
            cores.append(CpuCore(index, None, None))
            continue
        m = _CORE.fullmatch(item)
        if m is None:
            raise ValueError(f"tegrastats: bad CPU entry {item!r} in {line!r}")
        freq = m.group(2) or group_freq
        cores.append(CpuCore(index, float(m.group(1)), int(freq) if freq else None))
    return cores


def _add_rail(sample: TegrastatsSample, name: str, rail: Rail) -> None:
    key, n = name, 1
    while key in sample.rails:
        n += 1
        key = f"{name}#{n}"
    sample.rails[key] = rail


def _total_power(sample: TegrastatsSample) -> None:
    for name in INPUT_RAILS:
        if name in sample.rails:
            sample.total_power_mw = sample.rails[name].current_mw
            sample.total_power_source = name
            return
    for group in SUMMED_INPUT_RAILS:
        if all(name in sample.rails for name in group):
            sample.total_power_mw = sum(sample.rails[n].current_mw for n in group)
            sample.total_power_source = "+".join(group)
            return


def parse_tegrastats_line(line: str) -> TegrastatsSample:
    """Parse one tegrastats line.  Raises ``ValueError`` quoting the line on bad input."""
    text = line.rstrip("\r\n")
    sample = TegrastatsSample(raw=text)
    pos, seen_ram = 0, False
    m_ts = _TS.match(text)
    if m_ts:
        sample.timestamp = datetime.strptime(m_ts.group(1), "%m-%d-%Y %H:%M:%S")
        pos = m_ts.end()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        if m := _RAM.match(text, pos):
            seen_ram = True
            sample.ram_used_mb, sample.ram_total_mb = int(m[1]), int(m[2])
            if m[3]:
                sample.ram_lfb_blocks, sample.ram_lfb_block_mb = int(m[3]), int(m[4])
        elif m := _SWAP.match(text, pos):
            sample.swap_used_mb, sample.swap_total_mb = int(m[1]), int(m[2])
            sample.swap_cached_mb = int(m[3]) if m[3] else None
        elif m := _IRAM.match(text, pos):
            sample.iram_used_kb, sample.iram_total_kb = int(m[1]), int(m[2])
        elif m := _CPU.match(text, pos):
            sample.cpus = _parse_cpus(text, m[1], m[2])
        elif m := _MTS.match(text, pos):
            sample.mts_fg_pct, sample.mts_bg_pct = float(m[1]), float(m[2])
        elif m := _TEMP.match(text, pos):
            value = float(m[2])
            sample.temperatures_c[m[1]] = None if value == OFF_SENSOR_C else value
        elif m := _RAIL.match(text, pos):
            _add_rail(sample, m[1], Rail(float(m[2]), float(m[3])))
        elif m := _LOAD.match(text, pos):
            load, freqs = _load_freq(m)
            if m[1] in ("EMC_FREQ", "EMC"):
                sample.emc_pct, sample.emc_freq_mhz = load, (freqs[0] if freqs else None)
            elif m[1] in ("GR3D_FREQ", "GR3D"):
                sample.gpu_pct, sample.gpu_freq_mhz = load, freqs
            else:
                sample.engines[m[1]] = Engine(load, freqs[0] if freqs else None)
        elif m := _FREQ.match(text, pos):
            if m[2] == "off":
                sample.engines[m[1]] = Engine(None, None, enabled=False)
            else:
                sample.engines[m[1]] = Engine(None, int(m[2]))
        else:
            raise _error(text, pos, f"unrecognised field {text[pos:].split()[0]!r}")
        pos = m.end()
    if not seen_ram:
        raise ValueError(f"tegrastats: no 'RAM used/totalMB' field in {text!r}")
    _total_power(sample)
    return sample


def parse_tegrastats(text: str) -> list[TegrastatsSample]:
    """Parse tegrastats output with one sample per line; blank lines are skipped."""
    return [parse_tegrastats_line(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class PowerSummary:
    source: str  # rail name(s) the figures come from
    samples: int
    mean_mw: float
    peak_mw: float
    min_mw: float


def _power_of(sample: TegrastatsSample, rails: Sequence[str] | None) -> tuple[float, str]:
    if rails is None:
        if sample.total_power_mw is None or sample.total_power_source is None:
            raise ValueError(
                f"tegrastats: no known input rail in {sample.raw!r}; pass rails=[...] explicitly"
            )
        return sample.total_power_mw, sample.total_power_source
    missing = [r for r in rails if r not in sample.rails]
    if missing:
        raise ValueError(f"tegrastats: rails {missing} not in {sample.raw!r}")
    return sum(sample.rails[r].current_mw for r in rails), "+".join(rails)


def summarize_power(
    samples: Iterable[TegrastatsSample], rails: Sequence[str] | None = None
) -> PowerSummary:
    """Mean/peak/min of the input power (or of the sum of ``rails``) over samples."""
    values: list[float] = []
    source = ""
    for sample in samples:
        value, source = _power_of(sample, rails)
        values.append(value)
    if not values:
        raise ValueError("tegrastats: summarize_power needs at least one sample")
    return PowerSummary(source, len(values), statistics.fmean(values), max(values), min(values))


def energy_per_inference_mj(
    samples: Iterable[TegrastatsSample],
    inferences: int,
    duration_s: float,
    rails: Sequence[str] | None = None,
) -> float:
    """Energy per inference in mJ: mean power (mW) x duration (s) / inferences."""
    if inferences <= 0 or duration_s <= 0:
        raise ValueError(f"need inferences > 0 and duration_s > 0, got {inferences}, {duration_s}")
    return summarize_power(samples, rails).mean_mw * duration_s / inferences
