"""Errors raised by the conversion library, with user-facing messages and hints."""

from __future__ import annotations

import re
from dataclasses import dataclass


class ConversionInputError(ValueError):
    """The uploaded model (or the request) cannot be converted as given.

    ``str(err)`` is a message meant for the end user: it says what is wrong and what to do.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step: str | None = None

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConversionError(RuntimeError):
    """A converter failed on a valid input (unsupported op, converter bug, missing backend)."""

    def __init__(
        self, message: str, *, step: str = "", op: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.op = op
        self.hint = hint


class BackendMissingError(ConversionError):
    """The converter backend (TensorRT, onnx2tf venv, ...) is not installed on this host."""


TENSORRT_MISSING = (
    "TensorRT is not installed on this host: install TensorRT for your CUDA/JetPack "
    "(pip install 'latencylab[tensorrt]' on x86 GPU hosts)"
)


@dataclass
class ErrorInfo:
    """The ``error`` block of a conversion result."""

    step: str
    message: str
    op: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"step": self.step, "op": self.op, "message": self.message, "hint": self.hint}


# Patterns seen in converter messages that name the offending operator.
_OP_PATTERNS = [
    re.compile(r"(?:op_type|operation_type)=['\"]?(?P<op>[A-Za-z0-9_]+)"),  # onnx2torch
    re.compile(r"Unsupported (?:ONNX )?op(?:erator)?[: ]+['\"]?(?P<op>[A-Za-z0-9_:.]+)", re.I),
    re.compile(r"No Op registered for (?P<op>[A-Za-z0-9_]+)"),  # onnxruntime
    re.compile(r"Could not find an implementation for (?P<op>[A-Za-z0-9_]+)"),  # onnxruntime
    re.compile(r"PyTorch convert function for op '(?P<op>[A-Za-z0-9_.]+)' not implemented"),
    re.compile(
        r"(?:aten|torch\.ops\.aten)\.(?P<op>[A-Za-z0-9_]+)(?:\.default)? .*not (?:supported|implemented)"
    ),
    re.compile(r"operator (?:type )?['\"]?(?P<op>[A-Za-z0-9_]+)['\"]? is not supported", re.I),
]


def classify(step: str, exc: BaseException, target: str = "") -> ErrorInfo:
    """Turn any exception into an ``ErrorInfo`` whose hint tells the user what to do."""
    if isinstance(exc, ConversionInputError):
        return ErrorInfo(
            step=getattr(exc, "step", None) or step, message=exc.message, hint=exc.hint
        )
    if isinstance(exc, ConversionError):
        return ErrorInfo(step=exc.step or step, message=exc.message, op=exc.op, hint=exc.hint)
    text = f"{type(exc).__name__}: {exc}"
    op = None
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            op = m.group("op")
            break
    hint: str | None = None
    if op is not None:
        hint = (
            f"operator {op!r} is not supported by the {target or step} converter: rewrite that "
            "part of the model with supported ops, try another opset (13-18), or pick another target"
        )
    elif isinstance(exc, MemoryError):
        hint = "the converter ran out of memory: raise memory_mb in the request or use a smaller input shape"
    elif re.search(r"opset|ir_version|IR version", text, re.I):
        hint = "re-export the model with opset 17 (torch.onnx.export(..., opset_version=17))"
    elif re.search(r"dynamic|symbolic|SymInt|data-dependent|GuardOnDataDependent", text):
        hint = "give concrete sizes for every dynamic dimension in input_shapes, e.g. {'x': [1, 3, 224, 224]}"
    if len(text) > 4000:
        text = text[:4000] + " ... (truncated, see the log)"
    return ErrorInfo(step=step, message=text, op=op, hint=hint)
