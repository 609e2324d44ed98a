"""An ExecuTorch ETDump -> per-operator ``LayerProfile`` rows, read by
``executorch.devtools.Inspector``.

Shared by the host runner (``agents.runners.executorch``: a traced program of the Python
runtime writes the dump) and the phones (``agents.android.executorch``: an ``executor_runner``
built with the event tracer writes it on the phone, the agent pulls it back). Each row is one
operator event of the ``Execute`` block: XNNPACK's own ops inside a delegate call
(``Convolution (NHWC, F32) IGEMM``, compute unit ``XNNPACK``) and the portable kernels
(``native_call_cumsum.out``, compute unit ``CPU (portable)``), ``time_ms`` the mean over the
traced executions. The wrappers (``Method::execute``, ``DELEGATE_CALL``, ``OPERATOR_CALL``)
are left out; the note gives the sum of the rows against ``Method::execute``.

The Inspector reads the dump without an ETRecord (so rows carry the runtime's event names,
not the exported graph's node names) and converts the tracer's ticks with its defaults
(nanoseconds -> milliseconds: the default and Android platform layers count nanoseconds).
"""

from __future__ import annotations

from pathlib import Path

from latencylab.schemas import LayerProfile

WRAPPERS = ("Method::execute", "DELEGATE_CALL", "OPERATOR_CALL")
XNNPACK, PORTABLE = "XNNPACK", "CPU (portable)"


def op_type(event_name: str) -> str:
    """``Convolution (NHWC, F32) IGEMM #1`` -> ``Convolution (NHWC, F32) IGEMM``;
    ``native_call_cumsum.out`` -> ``cumsum.out``."""
    name = event_name.rsplit(" #", 1)[0]
    return name.removeprefix("native_call_")


def read_etdump(path: str | Path, source: str, skip: int = 0) -> tuple[list[LayerProfile], str]:
    """The operator rows of the dump at ``path`` and a note naming ``source`` (what wrote it);
    ``skip``: the first executions left out of each mean (a warm-up traced with the rest).

    Raises ``RuntimeError`` when the dump is empty or holds no operator events, and
    ``ImportError`` when ``executorch.devtools`` is not installed."""
    from executorch.devtools import Inspector

    if not Path(path).is_file() or not Path(path).stat().st_size:
        raise RuntimeError("the runtime wrote an empty ETDump (no event tracer?)")
    inspector = Inspector(etdump_path=str(path))
    rows: list[LayerProfile] = []
    wall = None
    runs = 0
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            if event.perf_data is None:
                continue
            raw = list(event.perf_data.raw)
            kept = raw[skip:] if len(raw) > skip else raw
            mean = sum(kept) / len(kept)
            if event.name == "Method::execute":
                wall, runs = mean, len(raw)
            if event.name in WRAPPERS:
                continue
            unit = XNNPACK if event.is_delegated_op else PORTABLE
            rows.append(LayerProfile(name=event.name, type=op_type(event.name), time_ms=mean, compute_unit=unit))  # fmt: skip
    if not rows:
        raise RuntimeError("the ETDump holds no operator events")
    total = sum(r.time_ms for r in rows)
    delegated = sum(1 for r in rows if r.compute_unit == XNNPACK)
    note = (
        f"per-operator profile from an ETDump ({source}, read by executorch.devtools.Inspector)"
        + (f", {runs} traced executions" if runs else "")
        + (f" (the first {skip} left out as warm-up)" if skip and runs > skip else "")
        + f"; {delegated} XNNPACK ops and "
        f"{len(rows) - delegated} portable kernels; sum of op means {total:.3f} ms vs "
        + (f"{wall:.3f} ms of Method::execute" if wall is not None else "no Method::execute event")
    )
    return rows, note
