"""The ``ConversionStep`` base: lazy, chainable model conversions.

A step is named ``<Target>From<Source>`` and is built from a source, which is either a path
(``.onnx`` / ``.pt2``) or another step. Nothing runs until ``.artifact()`` (or calling the
step) is asked for; the result is memoised, so ``TFLiteFromOnnx(OnnxFromTorch("m.pt2"))``
exports the ONNX once however many consumers ask for it. Each artifact gets a sidecar
``<artifact>.meta.json`` describing its inputs/outputs, precision and layout so that
runners feed it the right tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from converters.errors import ConversionError, ConversionInputError
from converters.inspect import ModelInfo, inspect_model, model_format, resolve_shapes

log = logging.getLogger("converters")

Source = Union[str, Path, "ConversionStep"]

PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, or of all files (sorted by relative path) of a directory bundle."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def path_size(path: str | Path) -> int:
    p = Path(path)
    return (
        sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        if p.is_dir()
        else p.stat().st_size
    )


@dataclass
class Artifact:
    """A converted model on disk plus what runners and validators need to know about it."""

    path: Path
    format: str  # onnx | tflite | coreml | openvino | tensorrt
    precision: str
    metadata: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    @property
    def size(self) -> int:
        return path_size(self.path)

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".meta.json")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            path=str(self.path), sha256=self.sha256, size=self.size, meta_path=str(self.meta_path)
        )
        return d

    def write_meta(self) -> None:
        meta = {"format": self.format, "precision": self.precision, **self.metadata}
        self.meta_path.write_text(json.dumps(meta, indent=2, default=str))


def io_entries(info: ModelInfo, shapes: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Default metadata: artifact I/O identical to the source's (same names, order, layout)."""
    shapes = shapes or {}
    return {
        "inputs": [
            {
                "name": t.name,
                "source_name": t.name,
                "shape": shapes.get(t.name, t.shape),
                "dtype": t.dtype,
                "perm": None,
            }
            for t in info.inputs
        ],
        "outputs": [
            {
                "name": t.name,
                "source_name": t.name,
                "shape": t.shape,
                "dtype": t.dtype,
                "perm": None,
            }
            for t in info.outputs
        ],
    }


class ConversionStep:
    """Base class of every conversion. Subclasses set the class attributes and ``_convert``."""

    target: ClassVar[str] = ""  # artifact format
    source_format: ClassVar[str] = ""  # "onnx" or "pt2"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    suffix: ClassVar[str] = ""

    def __init__(
        self,
        source: Source,
        *,
        out_dir: str | Path | None = None,
        precision: str = "fp32",
        input_shapes: dict[str, list[int]] | None = None,
        **options: Any,
    ) -> None:
        if precision not in self.precisions:
            raise ConversionInputError(
                f"{self.name} does not support precision {precision!r}; choose one of {list(self.precisions)}"
            )
        self.source = source
        self.precision = precision
        self.input_shapes = input_shapes
        self.options = options
        self._out_dir = Path(out_dir) if out_dir else None
        self._artifact: Artifact | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        src = self.source.name if isinstance(self.source, ConversionStep) else str(self.source)
        return f"{self.name}({src!r}, precision={self.precision!r})"

    # -- source handling ------------------------------------------------------------
    def source_path(self) -> Path:
        if isinstance(self.source, ConversionStep):
            return self.source.artifact().path
        return Path(self.source)

    def upstream_shapes(self) -> dict[str, list[int]] | None:
        if self.input_shapes is None and isinstance(self.source, ConversionStep):
            return self.source.upstream_shapes()
        return self.input_shapes

    def source_info(self) -> ModelInfo:
        return inspect_model(self.source_path())

    def static_shapes(self, info: ModelInfo) -> dict[str, list[int]]:
        return resolve_shapes(info.inputs, self.upstream_shapes(), purpose=self.name)

    def out_path(self, src: Path) -> Path:
        out_dir = self._out_dir or src.parent / "converted"
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = src.name.split(".")[0]
        tag = self.name.lower() + (
            f"-{self.options['backend']}" if self.options.get("backend") else ""
        )
        return out_dir / f"{stem}.{tag}.{self.precision}{self.suffix}"

    # -- running --------------------------------------------------------------------
    def artifact(self) -> Artifact:
        """Run the conversion (once) and return the artifact."""
        if self._artifact is None:
            src = self.source_path()
            fmt = model_format(src)
            if fmt != self.source_format:
                raise ConversionInputError(
                    f"{self.name} converts {self.source_format} models but got {src.name} ({fmt})",
                    hint="chain OnnxFromTorch first, e.g. TFLiteFromOnnx(OnnxFromTorch('model.pt2'))"
                    if self.source_format == "onnx"
                    else "pass the .pt2 program, or use the <Target>FromOnnx step",
                )
            out = self.out_path(src)
            log.info("%s: %s -> %s", self.name, src, out)
            t0 = time.perf_counter()
            try:
                metadata = self._convert(src, out)
            except ConversionInputError as exc:
                exc.step = getattr(exc, "step", None) or self.name
                raise
            except ConversionError:
                raise
            except Exception as exc:
                from converters.errors import classify

                info = classify(self.name, exc, self.target)
                raise ConversionError(
                    info.message, step=self.name, op=info.op, hint=info.hint
                ) from exc
            metadata.setdefault("step", self.name)
            metadata.setdefault("source", str(src))
            metadata.setdefault("source_format", fmt)
            self._artifact = Artifact(
                out, self.target, self.precision, metadata, time.perf_counter() - t0
            )
            self._artifact.write_meta()
        return self._artifact

    __call__ = artifact

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        raise NotImplementedError
