"""Once-for-All's own evolutionary search with a LatencyLab latency table as its efficiency
predictor.

    pip install ofa                       # Once-for-All (torch, torchvision)
    python examples/ofa_evolution_search.py --budget-ms 6.0 --table ID
    python examples/ofa_evolution_search.py --budget-ms 6.0 --table-json table.json

OFA's ``EvolutionFinder(efficiency_predictor, accuracy_predictor)`` samples, mutates and
crosses architectures with the accuracy predictor's ``arch_encoder`` (OFA's
``MobileNetArchEncoder``) and calls ``efficiency_predictor.get_efficiency(sample)`` on every
candidate; :class:`latencylab.search.OFAEfficiency` answers with the table's predicted
latency (ms), so ``constraint`` is a latency budget. ``--space ofa-mbv3`` uses the
MobileNetV3 space (a table of that space).

ACCURACY PROXY: OFA's trained accuracy predictor is a checkpoint downloaded from the
internet; this example ranks by MACs (millions) instead (``MacsProxy``) — under a latency
budget, more MACs usually means more accuracy in OFA spaces, but it is only a proxy. Pass
OFA's ``AccuracyPredictor`` (with its checkpoint) for a real search.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ofa.nas.accuracy_predictor import MobileNetArchEncoder
from ofa.nas.search_algorithm import EvolutionFinder

from latencylab.search import OFAEfficiency, TableLatency, ofa_arch
from latencylab.spaces import OFAElasticSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optuna_latency_constraint import load_table, mmacs  # the sibling example


class MacsProxy:
    """An accuracy-predictor stand-in for EvolutionFinder: ``arch_encoder`` (OFA's own) and
    ``predict_acc(samples)`` -> MACs in millions (see the module docstring)."""

    def __init__(self, space: OFAElasticSpace, image_sizes: list[int]) -> None:
        encoder = MobileNetArchEncoder
        if len(space.stages) == 6:  # ProxylessNAS: OFA's "mbv2" layout (5 x 4 + 1 blocks)
            encoder = type("ProxylessArchEncoder", (MobileNetArchEncoder,), {"SPACE_TYPE": "mbv2"})
        self.arch_encoder = encoder(
            image_size_list=image_sizes,
            ks_list=list(space.ks_list),
            expand_list=list(space.e_list),
            depth_list=list(space.d_list),
        )
        self.space = space

    def predict_acc(self, samples: list[dict[str, Any]]) -> np.ndarray:
        return np.array(
            [mmacs(self.space, ofa_arch(self.space, s), s["image_size"]) for s in samples]
        )


def search(
    table: TableLatency, budget_ms: float, population: int, generations: int, seed: int
) -> dict[str, Any]:
    space = table.space
    if not isinstance(space, OFAElasticSpace):
        raise SystemExit(f"{space.name}: OFA's EvolutionFinder searches OFA spaces only")
    random.seed(seed)
    np.random.seed(seed)
    efficiency = OFAEfficiency(table)
    proxy = MacsProxy(space, [table.predictor.resolution])
    finder = EvolutionFinder(
        efficiency,
        proxy,
        population_size=population,
        max_time_budget=generations,
        parent_ratio=0.25,
        mutation_ratio=0.5,
    )
    best_valids, best = finder.run_evolution_search(constraint=budget_ms, verbose=False)
    acc, sample, ms = best
    return {
        "best_sample": sample,
        "latency_ms": ms,
        "mmacs": acc,
        "best_valids": best_valids[1:],
        "efficiency_calls": efficiency.calls,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget-ms", type=float, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", type=int, help="a succeeded table's id on the coordinator")
    src.add_argument("--table-json", type=Path, help="a table's JSON export (?format=json)")
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--generations", type=int, default=50, help="EvolutionFinder max_time_budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    table = load_table(args)
    out = search(table, args.budget_ms, args.population, args.generations, args.seed)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"best: {out['mmacs']:.1f} MMACs (proxy), predicted {out['latency_ms']:.3f} ms")
        print(f"sample: {json.dumps(out['best_sample'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
