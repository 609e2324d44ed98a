"""Latency-constrained evolutionary search over ofa-proxyless with a LatencyLab table.

    python examples/latency_constrained_search.py --budget-ms 5.0 [--table ID]
        [--resolution 224] [--device local] [--threads 1] [--generations 30]

1. Pulls the device's latency table through the SDK (``Client().latency_table(...)``: built
   on the coordinator if it does not exist yet, downloaded once, then predicted locally at
   >100k archs/s; the calibrated predictor when the table has one).
2. Runs Once-for-All's evolution (``EvolutionFinder``: population, mutation, crossover)
   keeping only archs whose predicted latency is within the budget.
3. Submits the best arch as a whole ONNX network for a real end-to-end benchmark on the
   same device and settings, and prints predicted vs measured latency.

ACCURACY PROXY: there is no accuracy predictor here. Fitness is the network's multiply-
accumulate count (MACs, computed from its blocks): under a latency budget, more MACs
usually means more accuracy in OFA spaces, but it is only a proxy. Plug a real accuracy
predictor (e.g. OFA's ``AccuracyPredictor``) into ``fitness`` for a real search.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

from latencylab import Client
from latencylab.spaces import Block, get_space

SPACE = get_space("ofa-proxyless")


def macs(block: Block) -> int:
    """Multiply-accumulates of one block (convs and the classifier; activations ignored)."""
    (h, w, cin), (ho, wo, cout) = block.in_shape, block.out_shape
    if block.kind == "head":
        return cin * cout
    if block.kind in ("mbconv", "first_mbconv"):
        mid = block.mid
        expand = h * w * cin * mid if block.expand_conv else 0
        return expand + ho * wo * mid * block.kernel**2 + ho * wo * mid * cout
    return ho * wo * cin * cout * block.kernel**2 // max(1, block.groups)


def fitness(arch: dict[str, Any], resolution: int) -> float:
    """The accuracy PROXY: MACs of the network, in millions (see the module docstring)."""
    return sum(macs(b) for b in SPACE.blocks_for(arch, resolution)) / 1e6


def mutate(arch: dict[str, Any], rng: random.Random, p: float) -> dict[str, Any]:
    out = {k: list(v) for k, v in arch.items()}
    for i in range(len(out["ks"])):
        if rng.random() < p:
            out["ks"][i] = rng.choice(SPACE.choices["ks"])
        if rng.random() < p:
            out["e"][i] = rng.choice(SPACE.choices["e"])
    for i in range(len(out["d"]) - 1):  # the last stage has a fixed depth of 1
        if rng.random() < p:
            out["d"][i] = rng.choice(SPACE.choices["d"])
    return out


def crossover(a: dict[str, Any], b: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return {k: [rng.choice(pair) for pair in zip(a[k], b[k], strict=True)] for k in a}


def evolve(predict: Any, budget: float, res: int, args: argparse.Namespace) -> dict[str, Any]:
    """OFA-style evolution: keep the fittest archs whose predicted latency is within budget."""
    rng = random.Random(args.seed)

    def feasible(archs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        lat, _ = predict(archs)
        return [a for a, ms in zip(archs, lat, strict=True) if ms <= budget]

    population: list[dict[str, Any]] = []
    tries = 0
    while len(population) < args.population:
        population += feasible([SPACE.sample(rng) for _ in range(args.population)])
        tries += 1
        if tries > 200:
            raise SystemExit(f"no random arch meets {budget} ms; raise --budget-ms")
    population = population[: args.population]
    n_parents = max(2, args.population // 4)
    for gen in range(args.generations):
        population.sort(key=lambda a: fitness(a, res), reverse=True)
        parents = population[:n_parents]
        children: list[dict[str, Any]] = []
        while len(children) < args.population - n_parents:
            cands = [mutate(rng.choice(parents), rng, args.mutate_p) for _ in range(64)]
            cands += [crossover(rng.choice(parents), rng.choice(parents), rng) for _ in range(64)]
            children += feasible(cands)
        population = parents + children[: args.population - n_parents]
        if gen % 5 == 0 or gen == args.generations - 1:
            print(f"generation {gen:3d}: best proxy {fitness(parents[0], res):.1f} MMACs")
    return max(population, key=lambda a: fitness(a, res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget-ms", type=float, required=True)
    ap.add_argument("--table", type=int, help="an existing table id (default: build or reuse)")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--device", default="local")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--mutate-p", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-measure", action="store_true", help="skip the end-to-end benchmark")
    args = ap.parse_args()

    with Client() as c:
        if args.table is None:  # build the table (or reuse the identical one), then wait
            t = c.create_table(
                SPACE.name,
                device=args.device,
                runtime=args.runtime,
                resolution=args.resolution,
                threads=args.threads,
            )
            print(f"table {t.id}: {t.status} ({t.progress.done}/{t.progress.total})")
            table = c.wait_table(t.id)
        else:
            table = c.table(args.table)
        if table.status != "succeeded":
            raise SystemExit(f"table {table.id} is {table.status}: {table.error}")
        predictor = c.latency_table(table.id)
        res = table.resolution
        print(f"table {table.id}: {table.space} @ {res} on {table.device} ({table.predictor})")
        best = evolve(predictor.predict, args.budget_ms, res, args)
        predicted, lut_sum = predictor.predict_one(best)
        print(f"best arch: {best}")
        print(
            f"proxy {fitness(best, res):.1f} MMACs; predicted {predicted:.3f} ms "
            f"(plain table sum {lut_sum:.3f} ms; budget {args.budget_ms} ms)"
        )
        if args.no_measure:
            return
        from converters.blocks import network_model, save  # numpy + onnx: only here

        with tempfile.TemporaryDirectory() as tmp:
            path = save(network_model(SPACE, best, res), Path(tmp) / "best.onnx")
            model = c.upload_model(
                path,
                name=f"search best {args.budget_ms}ms",
                metadata={"tags": ["nas-search"], "arch": best},
            )
        target = {
            "runtime": table.runtime,
            "device": table.device,
            "threads": table.threads,
            "batch_size": table.batch_size,
            "precision": table.precision,
        }
        bench = c.wait(c.benchmark(model.id, [target], table.settings["measure"]).id)
        (r,) = bench.results
        if r.latency_ms is None:
            raise SystemExit(f"the benchmark failed: {r.error}")
        stat = table.settings.get("statistic", "min")
        measured = getattr(r.latency_ms, stat)
        assert measured is not None
        err = 100 * (predicted - measured) / measured
        print(
            f"measured end to end ({stat}): {measured:.3f} ms; predicted {predicted:.3f} ms "
            f"({err:+.1f}%); within budget: {measured <= args.budget_ms}"
        )


if __name__ == "__main__":
    main()
