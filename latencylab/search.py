"""Latency predictors inside the NAS search frameworks people use: Once-for-All and Optuna.

Standard library and :mod:`latencylab.spaces` only (this module ships in the light SDK); it
imports neither OFA nor Optuna — both are duck-typed.

A latency model is any object with ``predict_ms(arch) -> float`` (:class:`ArchLatency`).
Three come with it:

* :class:`TableLatency` — a latency table (the SDK's :class:`~latencylab.spaces.LocalPredictor`,
  ``Client().latency_table(...)``, or one built from an exported table JSON with
  :meth:`TableLatency.from_export`); ``predict_ms`` is the table's best predictor (the
  calibrated one when the table has a calibration);
* :class:`GraphLatency` — a graph-level predictor (one with ``predict_onnx(model)``, such as a
  kernel-level predictor bundle) plus a function that builds an architecture's graph;
* anything of your own with ``predict_ms``.

Once-for-All's ``EvolutionFinder(efficiency_predictor, accuracy_predictor)`` calls
``efficiency_predictor.get_efficiency(sample)`` on every candidate: :class:`OFAEfficiency`
is that object::

    from ofa.nas.search_algorithm import EvolutionFinder
    eff = OFAEfficiency(TableLatency(Client().latency_table(3)))
    finder = EvolutionFinder(eff, accuracy_predictor)
    best_valids, (acc, arch, ms) = finder.run_evolution_search(constraint=8.0)

For Optuna, :func:`suggest_arch` draws an architecture of a space from a trial and
:class:`LatencyConstraint` is a ``constraints_func`` (``TPESampler(constraints_func=...)``)
reading the latency the objective stored in ``trial.user_attrs`` (see
``examples/optuna_latency_constraint.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from latencylab.spaces import LocalPredictor, OFAElasticSpace, SearchSpace, get_space
from latencylab.spaces.base import Arch

__all__ = [
    "ArchLatency",
    "GraphLatency",
    "GraphPredictor",
    "LatencyConstraint",
    "OFAEfficiency",
    "TableLatency",
    "ofa_arch",
    "suggest_arch",
]


@runtime_checkable
class ArchLatency(Protocol):
    """A latency model of architectures: ``predict_ms(arch)`` in milliseconds."""

    def predict_ms(self, arch: Arch) -> float: ...


@runtime_checkable
class GraphPredictor(Protocol):
    """A graph-level predictor: ``predict_onnx(model)`` -> ms, or an object / mapping with
    ``latency_ms`` (a kernel predictor's prediction with its per-kernel breakdown)."""

    def predict_onnx(self, model: Any) -> Any: ...


class TableLatency:
    """A latency table as an :class:`ArchLatency` (and a batch predictor).

    ``calibrated=False`` uses the plain LUT sum even when the table has a calibration.
    """

    def __init__(self, predictor: LocalPredictor, calibrated: bool = True) -> None:
        self.predictor = predictor
        self.calibrated = calibrated

    @classmethod
    def from_export(cls, export: Mapping[str, Any], calibrated: bool = True) -> TableLatency:
        """From a table's JSON export (``GET /tables/{id}?format=json``, parsed, or a dump
        of :class:`~latencylab.tables.TableExport`)."""
        missing = [k for k in ("space", "entries", "resolution") if k not in export]
        if missing:
            raise ValueError(
                f"not a latency-table export (missing {', '.join(missing)}); "
                "download one with GET /api/v1/tables/{id}?format=json"
            )
        entries = {k: dict(v) for k, v in export["entries"].items()}
        pred = LocalPredictor(
            export["space"], entries, export.get("calibration"), int(export["resolution"])
        )
        return cls(pred, calibrated)

    @property
    def space(self) -> SearchSpace:
        return self.predictor.space

    def predict_many(self, archs: Sequence[Arch]) -> list[float]:
        """Latency of each architecture, in order."""
        lat, lut = self.predictor.predict(archs)
        return lat if self.calibrated else lut

    def predict_ms(self, arch: Arch) -> float:
        return self.predict_many([arch])[0]


def _latency_of(prediction: Any) -> float:
    if isinstance(prediction, int | float) and not isinstance(prediction, bool):
        return float(prediction)
    if isinstance(prediction, Mapping) and "latency_ms" in prediction:
        return float(prediction["latency_ms"])
    value = getattr(prediction, "latency_ms", None)
    if value is None:
        raise TypeError(
            f"predict_onnx returned {type(prediction).__name__}; expected milliseconds or an "
            "object with latency_ms"
        )
    return float(value)


class GraphLatency:
    """A graph-level predictor as an :class:`ArchLatency`: ``build(arch)`` makes the
    architecture's graph (e.g. ``functools.partial(converters.blocks.network_model, space)``),
    ``predictor.predict_onnx(graph)`` predicts it."""

    def __init__(self, predictor: GraphPredictor, build: Callable[[Arch], Any]) -> None:
        if not callable(getattr(predictor, "predict_onnx", None)):
            raise TypeError(f"{type(predictor).__name__} has no predict_onnx(model) method")
        self.predictor, self.build = predictor, build

    def predict_ms(self, arch: Arch) -> float:
        return _latency_of(self.predictor.predict_onnx(self.build(arch)))


def ofa_arch(space: SearchSpace, sample: Mapping[str, Any]) -> dict[str, Any]:
    """An OFA search sample in ``space``'s encoding.

    OFA's samples carry ``image_size`` (an int), and ``feature2arch`` writes ``0`` as the
    kernel / expand ratio of blocks beyond a stage's depth (they are inactive). Those
    entries get a valid placeholder (the space's smallest choice: it changes no latency,
    inactive blocks are not summed); everything else is passed on as it is.
    """
    arch = dict(space.normalize(dict(sample)))
    if not isinstance(space, OFAElasticSpace):
        return arch
    d = list(arch.get("d", []))
    ks, e = list(arch.get("ks", [])), list(arch.get("e", []))
    start = 0
    for stage, depth in zip(space.stages, d, strict=False):
        for i in range(stage.n_blocks):
            j = start + i
            if i >= depth and j < len(ks) and j < len(e):
                ks[j] = ks[j] if ks[j] in space.ks_list else space.ks_list[0]
                e[j] = e[j] if e[j] in space.e_list else space.e_list[0]
        start += stage.n_blocks
    arch["ks"], arch["e"] = ks, e
    return arch


class OFAEfficiency:
    """Once-for-All's efficiency predictor: ``get_efficiency(sample)`` -> predicted ms.

    ``latency`` is an :class:`ArchLatency` (or a :class:`~latencylab.spaces.LocalPredictor`),
    or a mapping ``{image_size: latency}`` when each resolution has its own table (OFA
    searches several). ``space`` defaults to the table's. The last ``cache_size``
    predictions are remembered (the evolution re-evaluates the same samples often).
    """

    def __init__(
        self,
        latency: ArchLatency | LocalPredictor | Mapping[int, ArchLatency | LocalPredictor],
        space: SearchSpace | str | None = None,
        cache_size: int = 4096,
    ) -> None:
        models = latency if isinstance(latency, Mapping) else {None: latency}
        self.models: dict[int | None, ArchLatency] = {
            r: TableLatency(m) if isinstance(m, LocalPredictor) else m for r, m in models.items()
        }
        for m in self.models.values():
            if not callable(getattr(m, "predict_ms", None)):
                raise TypeError(f"{type(m).__name__} has no predict_ms(arch) method")
        if space is None:
            spaces = {id(s): s for m in self.models.values() if (s := getattr(m, "space", None))}
            if len(spaces) != 1:
                raise ValueError("give the search space: space='ofa-proxyless' or 'ofa-mbv3'")
            space = next(iter(spaces.values()))
        self.space: SearchSpace = get_space(space) if isinstance(space, str) else space
        self.cache_size = cache_size
        self._cache: OrderedDict[str, float] = OrderedDict()
        self.calls = 0

    def _model(self, arch: Mapping[str, Any]) -> ArchLatency:
        if None in self.models:
            return self.models[None]
        res = self.space.arch_resolution(arch)
        if res not in self.models:
            have = ", ".join(str(r) for r in sorted(k for k in self.models if k is not None))
            raise KeyError(f"no latency model for image_size {res}; have: {have}")
        return self.models[res]

    def get_efficiency(self, sample: Mapping[str, Any]) -> float:
        """The predicted latency (ms) of an OFA sample (``ks``, ``e``, ``d``, ``image_size``)."""
        self.calls += 1
        arch = ofa_arch(self.space, sample)
        key = repr(sorted(arch.items()))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ms = float(self._model(arch).predict_ms(arch))
        self._cache[key] = ms
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return ms


def suggest_arch(trial: Any, space: SearchSpace | str) -> Arch:
    """An architecture of ``space`` drawn from an Optuna trial (``suggest_categorical``
    per choice: ``ks_i`` / ``e_i`` / ``d_s`` for OFA spaces, ``op_i`` for FBNet)."""
    if isinstance(space, str):
        space = get_space(space)
    if isinstance(space, OFAElasticSpace):
        ks = [
            trial.suggest_categorical(f"ks_{i}", list(space.ks_list))
            for i in range(space.num_blocks)
        ]
        e = [
            trial.suggest_categorical(f"e_{i}", list(space.e_list)) for i in range(space.num_blocks)
        ]
        d = [
            trial.suggest_categorical(f"d_{s}", list(space.d_list)) if st.elastic else st.n_blocks
            for s, st in enumerate(space.stages)
        ]
        return {"ks": ks, "e": e, "d": d}
    ops = space.choices.get("ops")
    n = space.choices.get("num_layers")
    if not isinstance(ops, list) or not isinstance(n, int):
        raise ValueError(f"{space.name}: suggest_arch knows OFA spaces and op-list spaces")
    return [trial.suggest_categorical(f"op_{i}", ops) for i in range(n)]


class LatencyConstraint:
    """Optuna ``constraints_func``: ``[latency_ms - budget_ms]`` (<= 0 is feasible), read
    from ``trial.user_attrs[key]``, which the objective sets with ``trial.set_user_attr``.
    A trial without it (failed before predicting) counts as infeasible."""

    def __init__(self, budget_ms: float, key: str = "latency_ms") -> None:
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be > 0, got {budget_ms!r}")
        self.budget_ms, self.key = float(budget_ms), key

    def __call__(self, trial: Any) -> Sequence[float]:
        ms = trial.user_attrs.get(self.key)
        return [float("inf") if ms is None else float(ms) - self.budget_ms]
