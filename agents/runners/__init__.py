"""Runner registry, derived from the runtime declarations (``latencylab.runtimes``).

A runtime is declared once, in ``latencylab.runtimes`` (or by ``LATENCYLAB_EXTRA_RUNTIMES``);
its entry here comes from that declaration. Entries are strings, so nothing heavy is imported
until a runner is actually requested.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from latencylab.runtimes import RUNTIMES, RuntimeDecl

if TYPE_CHECKING:
    from .base import Runner


class RunnerEntry(NamedTuple):
    """Where a runner lives and how to tell whether its runtime is installed."""

    target: str  # "module:Class"
    modules: tuple[str, ...]  # import names, any one of which provides the runtime
    extra: str  # pyproject extra: pip install 'latencylab[<extra>]'
    distributions: tuple[str, ...] = ()  # pip distribution names to read the version from
    platforms: tuple[str, ...] = ()  # sys.platform values it runs on; () = any

    @classmethod
    def of(cls, decl: RuntimeDecl) -> RunnerEntry:
        return cls(decl.runner, decl.modules, decl.extra, decl.distributions, decl.platforms)


REGISTRY: dict[str, RunnerEntry] = {d.name: RunnerEntry.of(d) for d in RUNTIMES}

# name -> "module:Class" (the lazy registry view)
RUNNERS: dict[str, str] = {name: e.target for name, e in REGISTRY.items()}


class RuntimeNotInstalledError(RuntimeError):
    """The runtime's Python package is missing on this agent."""


class UnknownRuntimeError(KeyError):
    """No runner is registered under this name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown runtime"


def _installed_module(entry: RunnerEntry) -> str | None:
    if entry.platforms and sys.platform not in entry.platforms:
        return None
    for mod in entry.modules:
        try:
            if importlib.util.find_spec(mod) is not None:
                return mod
        except (ImportError, ValueError):
            continue
    return None


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:
        return {}


def _version(entry: RunnerEntry, module: str) -> str:
    candidates = [*entry.distributions, *_packages_distributions().get(module, []), module]
    for dist in candidates:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def not_installed_message(name: str) -> str:
    """The error text for a registered runtime whose package is missing."""
    entry = REGISTRY[name]
    if entry.platforms and sys.platform not in entry.platforms:
        return (
            f"runtime '{name}' runs only on {', '.join(entry.platforms)}; "
            f"this agent runs {sys.platform}"
        )
    extra = entry.extra
    return f"runtime '{name}' is not installed on this agent: pip install 'latencylab[{extra}]'"


def runtime_module(name: str) -> str | None:
    """The installed import name that provides runtime ``name`` (None: missing/unregistered)."""
    entry = REGISTRY.get(name)
    return _installed_module(entry) if entry is not None else None


def detect_runtimes() -> dict[str, str]:
    """Installed runtimes with a registered runner: name -> version (no runtime import)."""
    found: dict[str, str] = {}
    for name, entry in REGISTRY.items():
        module = _installed_module(entry)
        if module is not None:
            found[name] = _version(entry, module)
    return found


def get_runner(name: str) -> type[Runner]:
    """The runner class for ``name``.

    Raises ``UnknownRuntimeError`` when no runner is registered under ``name`` and
    ``RuntimeNotInstalledError`` (naming the extra to install) when its package is missing.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise UnknownRuntimeError(
            f"no runner for runtime {name!r} on this agent (registered: {sorted(REGISTRY)})"
        )
    if _installed_module(entry) is None:
        raise RuntimeNotInstalledError(not_installed_message(name))
    module_name, _, cls_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeNotInstalledError(f"{not_installed_message(name)} ({exc})") from exc
    runner: type[Runner] = getattr(module, cls_name)
    return runner


__all__ = [
    "REGISTRY",
    "RUNNERS",
    "RunnerEntry",
    "RuntimeNotInstalledError",
    "UnknownRuntimeError",
    "detect_runtimes",
    "get_runner",
    "not_installed_message",
    "runtime_module",
]
