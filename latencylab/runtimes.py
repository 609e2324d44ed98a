"""Every runtime, declared once: what it runs, what it converts from, how to install and run it.

A runtime is one :class:`RuntimeDecl`. Everything else that used to list runtimes by hand is
derived from the declarations here:

* the wire schemas' ``Runtime`` names (``latencylab.schemas``: the benchmark target's
  ``runtime`` and its OpenAPI enum), and each runtime's closed options model
  (:func:`parse_options`, :func:`normalized_options`);
* the coordinator's rules (``server.store.conversions``): the format a runtime needs a
  conversion to (``RUNTIME_FORMAT``), the runtimes that run each stored format as it is
  (``NATIVE_RUNTIMES``), and the source formats such a conversion may start from;
* the agents' runner registry (``agents.runners.REGISTRY``: ``"module:Class"``, import names,
  the pip extra that installs it, platforms);
* how the converter validates an artifact of that format (``artifact_runner``, or the note
  saying why it is not validated where the converter runs).

Light imports only (pydantic): the SDK, the CLI and the coordinator read this without any
runtime installed. ``runner``/``artifact_runner`` are strings, imported only by the agent or
converter that uses them.

**Adding a runtime.** Built-in ones are :data:`BUILTIN`. Another one (a plug-in, or a dummy
in a test) is declared without touching this file, by the settings of each process that must
know it -- the coordinator, the agent, and the measuring subprocess, which inherits the
agent's environment::

    LATENCYLAB_EXTRA_RUNTIMES='[{"name": "mine", "format": "onnx", "extra": "mine",
        "runner": "mypkg.runner:MyRunner", "modules": ["mypkg"],
        "options": "mypkg.options:MyOptions"}]'

``options`` is imported while this module builds the registry, so its module imports only
``latencylab.runtime_options`` (never this module or a runner); ``runner`` is imported later,
by the agent's measuring process. In-process, :meth:`Runtimes.with_runtime` returns a new
registry with one more declaration (nothing is mutated).

**Why a module-level registry.** :data:`RUNTIMES` is computed once, at import, from
:data:`BUILTIN` plus ``LATENCYLAB_EXTRA_RUNTIMES`` and never changes afterwards. It cannot be a
value handed to the coordinator at start-up only: the wire schemas are pydantic classes whose
``runtime`` field (its validation and its OpenAPI enum) is fixed when the class is defined,
and a measurement runs in a fresh subprocess that must resolve the very same declaration by
name. A setting read once per process gives every process of a deployment the same set
without any mutable global.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ImportString, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from latencylab.runtime_options import (
    CoreMLOptions,
    ExecuTorchOptions,
    OnnxRuntimeOptions,
    OpenVinoOptions,
    OptionsError,
    PyTorchOptions,
    RuntimeOptions,
    TensorRTOptions,
    TFLiteOptions,
)

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Format = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class RuntimeDecl(BaseModel):
    """One runtime: the single place its facts are written down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="The runtime's name in benchmark targets")
    format: Format = Field(description="The artifact format it runs")
    native: tuple[Format, ...] | None = Field(
        None,
        description="Stored formats it runs as they are (default: just ``format``); e.g. "
        "pytorch runs .pt2 and ONNX (through onnx2torch)",
    )
    target: Format | None = Field(
        None,
        description="The converter target that produces ``format`` (None: never converted to, "
        "only uploads it runs natively)",
    )
    converts_from: tuple[Format, ...] = Field(
        ("onnx", "pt2"), description="Stored formats a conversion to ``target`` may start from"
    )
    extra: str = Field(description="pip extra that installs it: latencylab[<extra>]")
    runner: str = Field(description="The agent's runner, 'module:Class'")
    modules: tuple[str, ...] = Field(
        description="Import names, any one of which provides the runtime (no import to check)"
    )
    distributions: tuple[str, ...] = Field(
        (), description="pip distributions to read the installed version from"
    )
    platforms: tuple[str, ...] = Field((), description="sys.platform values it runs on; () = any")
    options: ImportString[type[RuntimeOptions]] = Field(
        RuntimeOptions, description="Its closed options model (or 'module:Class')"
    )
    artifact_runner: str | None = Field(
        None,
        description="'module:function' running an artifact of ``format`` on feeds for the "
        "converter's numerical validation",
    )
    not_validated: str | None = Field(
        None, description="Why the converter does not validate artifacts of ``format``"
    )
    built_on_device: bool = Field(
        False,
        description="Conversions are built on the device that runs them (TensorRT engines), "
        "not on converter workers",
    )
    blocked_layout: Literal["nchwc"] | None = Field(
        None,
        description="Its CPU kernels' blocked layout, when a predictor models it: 'nchwc' = "
        "onnxruntime's NCHWc, whose ReorderInput/ReorderOutput conversions a predictor build "
        "measures as kernel models of their own (predictor.conversions) and whose blocked "
        "convolutions the layout model learns (predictor.layout); None: conversions are "
        "priced from the samples' profiles only",
    )

    @property
    def native_formats(self) -> tuple[str, ...]:
        return self.native if self.native is not None else (self.format,)


class Runtimes:
    """An immutable set of declarations, and what is derived from it."""

    def __init__(self, decls: tuple[RuntimeDecl, ...]) -> None:
        names = [d.name for d in decls]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"runtimes declared twice: {', '.join(twice)}")
        self._decls = {d.name: d for d in decls}

    def __iter__(self) -> Iterator[RuntimeDecl]:
        return iter(self._decls.values())

    def __contains__(self, name: object) -> bool:
        return name in self._decls

    def __getitem__(self, name: str) -> RuntimeDecl:
        return self._decls[name]

    def get(self, name: str) -> RuntimeDecl | None:
        return self._decls.get(name)

    def with_runtime(self, decl: RuntimeDecl) -> Runtimes:
        """A new registry with ``decl`` added (a name declared already is an error)."""
        return Runtimes((*self._decls.values(), decl))

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(self._decls)

    @cached_property
    def runtime_format(self) -> dict[str, str]:
        """Runtime -> the converter target it needs when the upload is not native to it."""
        return {d.name: d.target for d in self if d.target is not None}

    @cached_property
    def native_runtimes(self) -> dict[str, set[str]]:
        """Stored format -> the runtimes that run it without a conversion."""
        out: dict[str, set[str]] = {}
        for d in self:
            for fmt in d.native_formats:
                out.setdefault(fmt, set()).add(d.name)
        return out

    @cached_property
    def options(self) -> dict[str, type[RuntimeOptions]]:
        return {d.name: d.options for d in self}

    def by_format(self, fmt: str) -> RuntimeDecl | None:
        """The declaration whose artifacts are of ``fmt`` (the first declared)."""
        return next((d for d in self if d.format == fmt), None)

    def by_target(self, target: str) -> RuntimeDecl | None:
        """The declaration whose converter target is ``target``."""
        return next((d for d in self if d.target == target), None)


BUILTIN: tuple[RuntimeDecl, ...] = (
    RuntimeDecl(
        name="onnxruntime", format="onnx", target="onnx", converts_from=("pt2",),
        extra="onnxruntime", runner="agents.runners.onnxruntime:OnnxRuntimeRunner",
        modules=("onnxruntime",),
        distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                       "onnxruntime-directml"),
        options=OnnxRuntimeOptions, artifact_runner="converters.inference:run_onnx",
        blocked_layout="nchwc",
    ),
    RuntimeDecl(
        name="tflite", format="tflite", target="tflite", extra="tflite",
        runner="agents.runners.tflite:TFLiteRunner", modules=("ai_edge_litert",),
        options=TFLiteOptions, artifact_runner="converters.inference:run_tflite",
    ),
    RuntimeDecl(
        name="coreml", format="coreml", target="coreml", extra="coreml",
        runner="agents.runners.coreml:CoreMLRunner", modules=("coremltools",),
        platforms=("darwin",), options=CoreMLOptions,
        not_validated="not validated: needs macOS",
    ),
    RuntimeDecl(
        name="tensorrt", format="tensorrt", native=(), target="tensorrt",
        converts_from=("onnx", "pt2"), extra="tensorrt",
        runner="agents.runners.tensorrt:TensorRTRunner", modules=("tensorrt",),
        options=TensorRTOptions, built_on_device=True,
        not_validated="not validated here: TensorRT engines are checked on the GPU agent",
    ),
    RuntimeDecl(
        name="openvino", format="openvino", target="openvino", extra="openvino",
        runner="agents.runners.openvino:OpenVinoRunner", modules=("openvino",),
        options=OpenVinoOptions, artifact_runner="converters.inference:run_openvino",
    ),
    RuntimeDecl(
        name="pytorch", format="pt2", native=("onnx", "pt2"), extra="torch",
        runner="agents.runners.pytorch:PyTorchRunner", modules=("torch",),
        options=PyTorchOptions,
    ),
    RuntimeDecl(
        name="executorch", format="executorch", target="executorch", extra="executorch",
        runner="agents.runners.executorch:ExecuTorchRunner", modules=("executorch",),
        platforms=("linux", "darwin"), options=ExecuTorchOptions,
        artifact_runner="converters.inference:run_executorch",
    ),
)  # fmt: skip
"""The runtimes LatencyLab ships, in the order they are listed to users."""


class RuntimeSettings(BaseSettings):
    """Runtimes declared by configuration (prefix ``LATENCYLAB_``), added to :data:`BUILTIN`."""

    model_config = SettingsConfigDict(env_prefix="LATENCYLAB_", extra="ignore")

    extra_runtimes: list[RuntimeDecl] = Field(
        default_factory=list,
        description="More runtime declarations (JSON list of RuntimeDecl objects)",
    )


def load_runtimes(settings: RuntimeSettings | None = None) -> Runtimes:
    """The built-in runtimes plus those the settings declare."""
    settings = settings if settings is not None else RuntimeSettings()
    return Runtimes((*BUILTIN, *settings.extra_runtimes))


RUNTIMES: Runtimes = load_runtimes()
"""This process's runtimes (read once at import; see the module docstring for why)."""


# ------------------------------------------------------------------------ options


def options_model(runtime: str, runtimes: Runtimes = RUNTIMES) -> type[RuntimeOptions]:
    decl = runtimes.get(runtime)
    return decl.options if decl is not None else RuntimeOptions


def parse_options(
    runtime: str, options: dict[str, Any] | None, runtimes: Runtimes = RUNTIMES
) -> RuntimeOptions:
    """The typed options of ``runtime``; ``OptionsError`` names every bad key and the allowed ones."""
    model = options_model(runtime, runtimes)
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = "unknown option" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{loc}: {msg}")
        allowed = ", ".join(sorted(model.model_fields))
        raise OptionsError(
            f"invalid {runtime} options: {'; '.join(problems)} (allowed: {allowed})"
        ) from None


def normalized_options(
    runtime: str, options: dict[str, Any] | None, runtimes: Runtimes = RUNTIMES
) -> dict[str, Any]:
    """Validated options as a plain dict without unset keys (what is stored with a job)."""
    return parse_options(runtime, options, runtimes).model_dump(exclude_none=True, mode="json")


OPTIONS: dict[str, type[RuntimeOptions]] = RUNTIMES.options
"""Runtime name -> its options model (derived from the declarations)."""
