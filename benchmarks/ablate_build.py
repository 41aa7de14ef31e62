"""Build every ablation variant of cached adapters WITHOUT scoring: build time per adapter and peak RSS.

Issue 13's memory/build-time check: calls `for_each_variant` the way `run_ablations` does (base-SVD and
shared-basis memos open for the whole run), for interventions already extracted by `ablate_time.py`.
With --out, also saves a per-variant fingerprint (energy fraction, per tensor y^T dW x and ||dW x|| for
fixed random probes) so two code versions can be compared variant by variant.

    .venv/bin/python benchmarks/ablate_build.py --dir /tmp/steerlab-ablate-bench/interventions [--threads 2]
        [--families lora,pissa,delora] [--out fingerprints.pt]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", required=True, help="folder holding ws-<family>/ intervention directories")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--families", default="lora,pissa,delora")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    import steerlab as sl
    from steerlab.analysis import memo
    from steerlab.analysis.inputs import load_adapters
    from steerlab.analysis.variants import Variant, for_each_variant
    from steerlab.interventions.weight import LowRankDelta

    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = sl.load_model(args.model)
    adapters = load_adapters([f"{args.dir}/ws-{f}" for f in args.families.split(",")], model)
    print(f"peak RSS after loading: {peak_rss_gib():.2f} GiB", flush=True)
    generator = torch.Generator().manual_seed(123)
    probes: dict[int, torch.Tensor] = {}
    prints: dict[tuple[str, str], Any] = {}

    def probe(dim: int) -> torch.Tensor:
        if dim not in probes:
            probes[dim] = torch.randn(dim, 2, generator=generator, dtype=torch.float64)
        return probes[dim]

    def consumer(label: str) -> Any:
        def consume(v: Variant) -> None:
            if args.out is None:
                return
            rows = []
            for d in v.delta.deltas.values():
                x, y = probe(d.shape[1]), probe(d.shape[0] + 1)[:-1]
                if isinstance(d, LowRankDelta):
                    dx = d.up.double() @ (d.down.double() @ x)
                else:
                    dx = d.double() @ x
                rows.append(torch.cat([(y * dx).sum(0), dx.norm(dim=0)]))
            prints[(label, v.name)] = (v.energy_fraction, torch.stack(rows) if rows else None)

        return consume

    with memo.memoized("base_svd", "shared_basis"):
        for adapter in adapters:
            wall, cpu = time.perf_counter(), time.process_time()
            for_each_variant(adapter, adapters, model, consumer(adapter.label))
            print(
                f"{adapter.label}: built in {time.perf_counter() - wall:.1f} s wall, "
                f"{time.process_time() - cpu:.1f} s CPU; peak RSS so far {peak_rss_gib():.2f} GiB",
                flush=True,
            )
    print(f"peak RSS {peak_rss_gib():.2f} GiB")
    if args.out:
        torch.save(prints, args.out)


if __name__ == "__main__":
    main()
