"""Optuna search over ofa-proxyless with a LatencyLab latency table as a hard constraint.

    python examples/optuna_latency_constraint.py --budget-ms 6.0 --table ID
    python examples/optuna_latency_constraint.py --budget-ms 6.0 --table-json table.json

The table comes from the coordinator (``--table ID``: downloaded once through the SDK and
predicted locally) or from a table's JSON export (``--table-json``: ``GET
/api/v1/tables/{id}?format=json`` saved to a file; no server needed). Each trial draws an
architecture (``latencylab.search.suggest_arch``: one categorical per kernel size, expand
ratio and stage depth), stores its predicted latency in ``trial.user_attrs["latency_ms"]``,
and Optuna's ``TPESampler(constraints_func=LatencyConstraint(budget))`` treats trials over
the budget as infeasible (it keeps sampling them less, and ``best`` is the best feasible one).

ACCURACY PROXY: there is no accuracy predictor here. The objective is the network's
multiply-accumulate count (MACs) in millions: under a latency budget, more MACs usually means
more accuracy in OFA spaces, but it is only a proxy. Put a real accuracy predictor in
``objective`` for a real search.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import optuna

from latencylab.search import LatencyConstraint, TableLatency, suggest_arch
from latencylab.spaces import Block, SearchSpace


def macs(block: Block) -> int:
    """Multiply-accumulates of one block (convs and the classifier; activations ignored)."""
    (h, w, cin), (ho, wo, cout) = block.in_shape, block.out_shape
    if block.kind == "head":
        return cin * cout
    if block.kind in ("mbconv", "first_mbconv"):
        expand = h * w * cin * block.mid if block.expand_conv else 0
        return expand + ho * wo * block.mid * (block.kernel**2 + cout)
    return ho * wo * cin * cout * block.kernel**2 // max(1, block.groups)


def mmacs(space: SearchSpace, arch: Any, resolution: int) -> float:
    return sum(macs(b) for b in space.blocks_for(arch, resolution)) / 1e6


def load_table(args: argparse.Namespace) -> TableLatency:
    if args.table_json is not None:
        return TableLatency.from_export(json.loads(Path(args.table_json).read_text()))
    from latencylab import Client

    with Client() as c:
        return TableLatency(c.latency_table(args.table))


def search(table: TableLatency, budget_ms: float, trials: int, seed: int) -> dict[str, Any]:
    """Run the study; the best feasible trial's arch, latency and proxy (or an error)."""
    space, res = table.space, table.predictor.resolution

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_arch(trial, space)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("latency_ms", table.predict_ms(arch))
        return mmacs(space, arch, res)

    sampler = optuna.samplers.TPESampler(
        seed=seed, constraints_func=LatencyConstraint(budget_ms), n_startup_trials=10
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=trials)
    feasible = [t for t in study.trials if t.user_attrs["latency_ms"] <= budget_ms]
    out: dict[str, Any] = {"trials": len(study.trials), "feasible": len(feasible)}
    if feasible:
        best = study.best_trial  # with constraints: the best feasible trial
        out.update(
            best_arch=best.user_attrs["arch"],
            latency_ms=best.user_attrs["latency_ms"],
            mmacs=best.value,
            best_feasible_mmacs=max(float(t.value or 0.0) for t in feasible),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget-ms", type=float, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", type=int, help="a succeeded table's id on the coordinator")
    src.add_argument("--table-json", type=Path, help="a table's JSON export (?format=json)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_table(args)
    out = search(table, args.budget_ms, args.trials, args.seed)
    if args.json:
        print(json.dumps(out))
    elif "best_arch" in out:
        print(f"{out['feasible']} of {out['trials']} trials within {args.budget_ms} ms")
        print(f"best: {out['mmacs']:.1f} MMACs (proxy), predicted {out['latency_ms']:.3f} ms")
        print(f"arch: {json.dumps(out['best_arch'])}")
    if "best_arch" not in out:
        print(f"no trial met {args.budget_ms} ms; raise --budget-ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
