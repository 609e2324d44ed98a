"""Local latency prediction from a block table, and the OFA YAML export.

A *table* maps :attr:`Block.key` to a mean latency in ms, or to a stats mapping with at
least ``mean`` (``{"mean": ms, "count": n, "var": ms^2}``). One table may hold several
resolutions (a block key includes its input and output shapes).

:class:`LocalPredictor` sums the table over the blocks of each architecture without building
a :class:`Block` per call: for each resolution it precomputes, per slot, a ``choice -> ms``
dict and, per depth key, the tuple of active slots, so an architecture costs one C-level
``sum(map(...))``. Standard library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .base import Arch, SearchSpace

Table = Mapping[str, Any]
Stats = Mapping[str, Any] | float


def _mean(value: Stats) -> float:
    return float(value["mean"]) if isinstance(value, Mapping) else float(value)


def parse_calibration(calibration: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """``(a, b)`` for ``latency = a * lut_sum + b``, or None for no calibration.

    Accepted: None, ``{"kind": "none"}``, ``{"kind": "linear", "a": .., "b": ..}``,
    ``{"kind": "scale", "a": ..}`` and ``{"kind": "offset", "b": ..}``.
    """
    if calibration is None:
        return None
    kind = calibration.get("kind", "linear")
    if kind in ("none", "identity"):
        return None
    if kind not in ("linear", "scale", "offset"):
        raise ValueError(f"unknown calibration kind {kind!r}; use linear, scale, offset or none")
    a = float(calibration.get("a", 1.0)) if kind != "offset" else 1.0
    b = float(calibration.get("b", 0.0)) if kind != "scale" else 0.0
    return a, b


@dataclass
class _Compiled:
    pre_ms: float
    post_ms: float
    missing: list[str]
    active: dict[Hashable, tuple[Callable[[Sequence[Any]], Sequence[Any]], tuple[dict, ...]]]
    decode: Callable[[Arch], tuple[Hashable, Sequence[Hashable]]]


def _getter(idx: tuple[int, ...]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    if len(idx) == 0:
        return lambda seq: ()
    if len(idx) == 1:
        j = idx[0]
        return lambda seq: (seq[j],)
    return itemgetter(*idx)


class LocalPredictor:
    """Predict latencies of many architectures of one space from a block table, fast.

    ``predict(archs)`` returns ``(latency_ms, lut_sum_ms)``: the plain sums of block means
    and the same with the calibration applied (``a * sum + b``; equal without calibration).
    """

    def __init__(
        self,
        space: SearchSpace | str,
        table: Table,
        calibration: Mapping[str, Any] | None = None,
        resolution: int | None = None,
    ) -> None:
        if isinstance(space, str):
            from . import get_space  # the registry imports this module

            space = get_space(space)
        self.space = space
        self.table = table
        self.calibration = parse_calibration(calibration)
        self.resolution = space.check_resolution(resolution)
        self._compiled: dict[int, _Compiled] = {}

    def _compile(self, res: int) -> _Compiled:
        if res in self._compiled:
            return self._compiled[res]
        plan = self.space.lut_plan(res)
        table, missing = self.table, []
        fixed: list[list[float]] = [[], []]
        for part, blocks in zip(fixed, (plan.pre, plan.post), strict=True):
            for b in blocks:
                if b.key in table:
                    part.append(_mean(table[b.key]))
                else:
                    missing.append(b.key)
        tabs = [
            {c: _mean(table[b.key]) for c, b in slot.items() if b.key in table}
            for slot in plan.slots
        ]
        active = {
            dkey: (_getter(idx), tuple(tabs[j] for j in idx)) for dkey, idx in plan.active.items()
        }
        pre_ms = 0.0
        for v in fixed[0]:
            pre_ms += v
        comp = _Compiled(pre_ms, math.fsum(fixed[1]), missing, active, plan.decode)
        self._compiled[res] = comp
        return comp

    def predict(
        self, archs: Iterable[Arch], resolution: int | None = None
    ) -> tuple[list[float], list[float]]:
        """``(latency_ms, lut_sum_ms)`` lists, one entry per architecture, in order.

        An arch's own ``image_size`` / ``r`` entry overrides ``resolution``. Raises
        ValueError for an arch not in the space, KeyError for a block missing from the table.
        """
        space = self.space
        res0 = space.check_resolution(resolution) if resolution is not None else self.resolution
        comp0 = self._compile(res0)
        sums: list[float] = []
        append = sums.append
        getitem = dict.__getitem__
        for arch in archs:
            comp = comp0
            if type(arch) is dict and ("image_size" in arch or "r" in arch):
                comp = self._compile(space.arch_resolution(arch, res0))
            try:
                if comp.missing:
                    raise KeyError(comp.missing[0])
                dkey, choices = comp.decode(arch)
                get, tabs = comp.active[dkey]
                append(sum(map(getitem, tabs, get(choices)), comp.pre_ms) + comp.post_ms)
            except Exception:
                append(self._slow(arch, res0))
        if self.calibration is None:
            return list(sums), sums
        a, b = self.calibration
        return [a * s + b for s in sums], sums

    def predict_one(self, arch: Arch, resolution: int | None = None) -> tuple[float, float]:
        """``(latency_ms, lut_sum_ms)`` of one architecture."""
        lat, lut = self.predict([arch], resolution)
        return lat[0], lut[0]

    def _slow(self, arch: Arch, res: int) -> float:
        """Block-by-block sum with clear errors (used for shorthands and failures)."""
        blocks = self.space.blocks_for(arch, res)  # ValueError if arch is invalid
        total = 0.0
        for b in blocks:
            if b.key not in self.table:
                raise KeyError(f"{self.space.name}: the table has no entry for block {b.key}")
            total += _mean(self.table[b.key])
        return total


def naive_lut_sum(space: SearchSpace, table: Table, arch: Arch, resolution: int | None = None):
    """Left-to-right sum of the table over ``space.blocks_for(arch)`` (the reference sum)."""
    total = 0.0
    for b in space.blocks_for(arch, resolution):
        total += _mean(table[b.key])
    return total


def ofa_entries(
    space: SearchSpace, table: Table, resolution: int | None = None, key: str = "ofa_key"
) -> dict[str, dict[str, float | int]]:
    """The table's entries at ``resolution`` re-keyed by reference key, as stats dicts.

    ``key`` is ``"ofa_key"`` (Once-for-All tables) or ``"hwnas_key"`` (HW-NAS-Bench).
    Blocks without a reference key or without a table entry are left out.
    """
    out: dict[str, dict[str, float | int]] = {}
    for b in space.expand(resolution):
        ref = getattr(b, key)
        if ref is None or b.key not in table:
            continue
        v = table[b.key]
        if isinstance(v, Mapping):
            out[ref] = {
                "mean": float(v["mean"]),
                "count": int(v.get("count", 1)),
                "var": float(v.get("var", 0.0)),
            }
        else:
            out[ref] = {"mean": float(v), "count": 1, "var": 0.0}
    return out


def lut_sum_ofa_style(
    space: SearchSpace, arch: Arch, ofa_table: Mapping[str, Any], resolution: int | None = None
) -> float:
    """What OFA's ``predict_network_latency_given_config`` sums: ``lut[ofa_key]["mean"]``."""
    total = 0.0
    for b in space.blocks_for(arch, resolution):
        if b.ofa_key is None:
            raise ValueError(f"{space.name}: block {b.key} has no OFA latency-table key")
        total += _mean(ofa_table[b.ofa_key])
    return total


_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.:x-]*")


def _yaml_key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and not key.endswith(":"):
        return key
    return json.dumps(key)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_float(x: float) -> str:
    """A float YAML 1.1 (PyYAML) reads back as a float: it needs a '.' before an exponent."""
    x = float(x)
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    r = repr(x)
    if "e" in r and "." not in r:
        mant, exp = r.split("e")
        r = f"{mant}.0e{exp}"
    return r


def to_ofa_yaml(
    entries: Mapping[str, Stats] | Iterable[tuple[str, Stats]], header: str | None = None
) -> str:
    """The OFA / ProxylessNAS latency-table YAML (one file per resolution), without PyYAML.

    ``entries`` maps an OFA key (:attr:`Block.ofa_key`, see :func:`ofa_entries`) to a stats
    mapping (``mean`` ms, ``count``, ``var`` ms^2) or to a bare mean. Output, per key::

        Conv-input:224x224x3-output:112x112x32:
          count: 50
          mean: 1.25
          var: 0.0004
    """
    items = entries.items() if isinstance(entries, Mapping) else entries
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for key, value in items:
        if isinstance(value, Mapping):
            mean = value["mean"]
            count, var = value.get("count", 1), value.get("var", 0.0)
        else:
            mean, count, var = value, 1, 0.0
        lines += [
            f"{_yaml_key(key)}:",
            f"  count: {int(count)}",
            f"  mean: {_yaml_float(mean)}",
            f"  var: {_yaml_float(var)}",
        ]
    return "\n".join(lines) + "\n" if lines else "{}\n"
