"""Where the time of `steerlab bench --preset quick` goes: generation, training, calibration, evaluation.

Measures, in one run on the preset's model, each kind of work the quick plan does once, then multiplies
by how often the plan does it to project the preset's wall time against its 20-minute budget:

- generation: greedy decoding of the calibration rollout shape (8 prompts x 20 tokens), and the contrast
  data sampling of weight steering (timed apart from training by generating it first);
- training: one weight-steering extraction (ws-lora, both poles) with the contrast data cached;
- extraction of the other families (prompt, mean_diff, random);
- calibration: one iso-KL search for each method with a dose (the first vector of a bank stands for the
  bank's others), since the evaluations a search needs differ by method;
- evaluation: each eval of the preset at (-c, +c) per arm plus its c = 0 rows once per run (the bench shares
  them across arms), and the bootstrap summary of one table.

    .venv/bin/python benchmarks/bench_profile.py [--preset quick] [--threads 2] [--ladder 0.5,1,2]

With ``--ladder`` it also measures the kl-ladder policy at those targets (one calibrate_ladder search per
method with a dose; each eval at mean_diff's ladder coefficients, plus the unsteered c = 0 rows scored once
per eval and shared by every arm) and prints the projected ladder run against the single-level run.

The machine is shared: the script prints the load average before and after; compare runs only at
similar load.
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from collections.abc import Callable
from typing import Any


def timed(label: str, fn: Callable[[], Any], results: dict[str, float]) -> Any:
    started = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - started
    print(f"  {label:<44} {results[label]:8.1f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ladder", default="", help="kl-ladder targets to profile too, e.g. 0.5,1,2")
    args = parser.parse_args()

    import torch

    from steerlab.behaviors import get_behavior
    from steerlab.bench import load_preset
    from steerlab.bench.plan import build_plan
    from steerlab.calibrate import CalibrationConfig, calibrate, calibration_prompts
    from steerlab.chat import format_chat
    from steerlab.evals import evaluate, summarise_eval
    from steerlab.methods import extract
    from steerlab.methods.registry import get_method, make_config
    from steerlab.methods.weight_data import ResponseFilter, generate_contrast
    from steerlab.methods.weight_steering import generation_settings
    from steerlab.models import load_model
    from steerlab.scoring import generate_ids

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_preset(args.preset)
    plan = build_plan(config)
    load_before = os.getloadavg()
    print(
        f"preset {args.preset!r}: {len(plan)} units; torch threads {torch.get_num_threads()}; "
        f"load average {load_before[0]:.1f}",
        flush=True,
    )
    t: dict[str, float] = {}
    model, tok = timed(
        "load model", lambda: load_model(config.model, device=config.device, dtype=config.dtype), t
    )
    behavior = get_behavior(config.behavior)
    cal_config = CalibrationConfig(**config.calibration)

    print("generation")
    prompts = [format_chat(tok, u) for u in calibration_prompts(cal_config.n_prompts)]
    timed(
        "greedy rollout (calibration shape)",
        lambda: generate_ids(model, tok, prompts, max_new_tokens=cal_config.n_tokens, stop_at_eos=False),
        t,
    )
    weight_methods = [m for m in config.methods if get_method(m).family == "weight"]
    if weight_methods:
        ws = make_config(
            get_method(weight_methods[0]), dict(config.method_options.get(weight_methods[0], {}))
        )
        timed(
            "weight-steering contrast data (sampling)",
            lambda: generate_contrast(
                model,
                tok,
                behavior,
                generation_settings(ws),
                seed=config.seeds[0],
                response_filter=ResponseFilter(enabled=ws.filter_responses),
                use_cache=False,
            ),
            t,
        )

    print("extraction / training")
    extracted = {}
    for method in dict.fromkeys(["prompt-simple", "mean_diff", *config.methods]):
        if method not in config.methods or (method in weight_methods and method != weight_methods[0]):
            continue
        options = dict(config.method_options.get(method, {}))
        label = f"extract {method}" + (" (training, data cached)" if method in weight_methods else "")
        extracted[method] = timed(
            label,
            lambda m=method, o=options: extract(model, tok, behavior, m, seed=config.seeds[0], config=o),
            t,
        )

    print("calibration")
    steps: list[float] = []
    last = [time.perf_counter()]

    def tick(_point: Any) -> None:
        now = time.perf_counter()
        steps.append(now - last[0])
        last[0] = now

    dosed = dosed_interventions(extracted)
    for method, dosed_one in dosed.items():
        steps.clear()
        last[0] = time.perf_counter()
        found = timed(
            f"iso-KL search, {method}",
            lambda i=dosed_one: calibrate(model, tok, i, cal_config, progress=tick),
            t,
        )
        per_eval = sum(steps) / len(steps)
        print(
            f"    {found.n_evals} KL evaluations, {per_eval:.1f} s each; |c| = {found.coeff:.3g}, KL = {found.achieved_kl:.3f}"
        )
        if method == "mean_diff":
            result = found
    intervention = extracted["mean_diff"]
    if "prompt-simple" in extracted:
        timed(
            "KL measurement, prompt-simple",
            lambda: calibrate(model, tok, extracted["prompt-simple"], cal_config),
            t,
        )

    print("evaluation")
    c = result.coeff
    eval_seconds = {}
    table = None
    base_seconds = 0.0
    for name in config.evals:
        options = dict(config.eval_options.get(name, {}))
        # the c = 0 work first: what a run does once (off-task's unsteered reference is memoised per model)
        label = f"eval {name} base rows (c = 0, once per run)"
        timed(
            label,
            lambda n=name, o=options: evaluate(model, tok, None, n, [0.0], behavior=config.behavior, **o),
            t,
        )
        base_seconds += t[label]
        table = timed(
            f"eval {name} at -c, +c",
            lambda n=name, o=options: evaluate(
                model, tok, intervention, n, [-c, c], behavior=config.behavior, **o
            ),
            t,
        )
        eval_seconds[name] = t[f"eval {name} at -c, +c"]
        print(f"    {table['row_id'].nunique()} rows x 2 coefficients")
    timed(
        f"bootstrap summary ({config.n_boot} resamples), one table",
        lambda: summarise_eval(table, n_boot=config.n_boot),
        t,
    )

    # ---- projection of the whole plan from the measured unit costs
    families = {m: get_method(m).family for m in config.methods}
    counts = collections.Counter((u.kind, families[u.method]) for u in plan)
    extract_cost = {
        "prompt": t.get("extract prompt-simple", 0.0),
        "activation": t.get("extract mean_diff", 0.0),
        "unsupervised": t.get("extract random", 0.0),
        "weight": t.get(f"extract {weight_methods[0]} (training, data cached)", 0.0)
        if weight_methods
        else 0.0,
    }
    eval_per_arm = sum(eval_seconds.values()) + t[
        f"bootstrap summary ({config.n_boot} resamples), one table"
    ] * len(eval_seconds)
    buckets = {
        "generation (weight-steering data, once)": t.get("weight-steering contrast data (sampling)", 0.0),
        "training + extraction": sum(extract_cost[f] * counts[("extract", f)] for f in extract_cost),
        "calibration": search_seconds(t, "iso-KL search", plan, dosed, weight_methods)
        + t.get("KL measurement, prompt-simple", 0.0) * counts[("calibrate", "prompt")],
        # the bench scores an eval's c = 0 rows once per run and shares them with every arm
        "evaluation": eval_per_arm * sum(n for (k, _), n in counts.items() if k == "calibrate")
        + base_seconds,
        "model load": t["load model"],
    }
    total = sum(buckets.values())
    print(f"\nprojected `steerlab bench --preset {args.preset}` from empty caches (units: {dict(counts)}):")
    for name, seconds in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<42} {seconds / 60:6.1f} min  {100 * seconds / total:5.1f}%")
    print(f"  {'total':<42} {total / 60:6.1f} min")
    print(f"ratio projected / 20-minute budget: {total / 1200:.2f}")
    print(f"ratio calibration / evaluation per arm: {t['iso-KL search, mean_diff'] / eval_per_arm:.2f}")
    if args.ladder:
        targets = [float(x) for x in args.ladder.split(",") if x.strip()]
        ladder_total = profile_ladder(
            model, tok, config, dosed, targets, buckets, counts, t, plan, weight_methods
        )
        print(f"ratio {len(targets)}-level ladder / single level: {ladder_total / total:.2f} (target < 1.6)")
    print(
        f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (2 cores; > 2 means contention)"
    )


def dosed_interventions(extracted: dict[str, Any]) -> dict[str, Any]:
    """The extracted interventions that have a dose, one per method (a bank's first vector for the bank)."""
    from steerlab.calibrate_ladder import intervention_has_dose

    out = {}
    for method, extracted_one in extracted.items():
        one = extracted_one.select(0) if getattr(extracted_one, "size", 1) > 1 else extracted_one
        if intervention_has_dose(one):
            out[method] = one
    return out


def search_seconds(
    t: dict[str, float], label: str, plan: Any, dosed: dict[str, Any], weight_methods: list[str]
) -> float:
    """The plan's calibration units with a dose, each costed at its method's measured search (the weight
    family measured stands for the others)."""
    total = 0.0
    for unit in plan:
        if unit.kind != "calibrate":
            continue
        method = weight_methods[0] if unit.method in weight_methods else unit.method
        if method in dosed:
            total += t[f"{label}, {method}"]
    return total


def profile_ladder(
    model: Any,
    tok: Any,
    config: Any,
    dosed: dict[str, Any],
    targets: list[float],
    buckets: dict[str, float],
    counts: collections.Counter,
    t: dict[str, float],
    plan: Any,
    weight_methods: list[str],
) -> float:
    """Measure the ladder's calibration and evaluation costs and project the ladder run; returns its total."""
    from steerlab.calibrate import CalibrationConfig
    from steerlab.calibrate_ladder import calibrate_ladder, ladder_coefficients
    from steerlab.evals import evaluate

    print(f"kl-ladder {targets}")
    cal_config = CalibrationConfig(**config.calibration)
    for method, dosed_one in dosed.items():
        found = timed(
            f"kl-ladder search, {method}",
            lambda i=dosed_one: calibrate_ladder(model, tok, i, targets, cal_config),
            t,
        )
        print(f"    fresh KL evaluations per level: {[lv.n_evals for lv in found]}")
        if method == "mean_diff":
            levels = found
    intervention = dosed["mean_diff"]
    nonzero = [c for c in ladder_coefficients(levels) if c != 0.0]
    steered, base = 0.0, 0.0
    for name in config.evals:
        options = dict(config.eval_options.get(name, {}))
        label = f"eval {name} at {len(nonzero)} coefficients"
        timed(
            label,
            lambda n=name, o=options: evaluate(
                model, tok, intervention, n, nonzero, behavior=config.behavior, **o
            ),
            t,
        )
        steered += t[label]
        base += t[f"eval {name} base rows (c = 0, once per run)"]  # measured with the single level
    arms = sum(n for (k, _), n in counts.items() if k == "calibrate")
    dosed_arms = sum(n for (k, f), n in counts.items() if k == "calibrate" and f != "prompt")
    ladder = dict(buckets)
    ladder["calibration"] = search_seconds(t, "kl-ladder search", plan, dosed, weight_methods) + t.get(
        "KL measurement, prompt-simple", 0.0
    ) * (arms - dosed_arms)
    # an arm without a dose (prompting) is scored at c = -1 and +1 only, whatever the levels
    ladder["evaluation"] = steered * dosed_arms + steered * 2 / len(nonzero) * (arms - dosed_arms) + base
    total = sum(ladder.values())
    print(f"projected {len(targets)}-level ladder run:")
    for name, seconds in sorted(ladder.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<42} {seconds / 60:6.1f} min")
    print(f"  {'total':<42} {total / 60:6.1f} min")
    return total


if __name__ == "__main__":
    main()
