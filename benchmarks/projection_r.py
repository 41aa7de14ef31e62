"""Does the projection onto a trait vector predict the judged trait of the response? Pearson r on SmolLM2.

Persona vectors (Chen et al. 2025) report r = 0.75-0.83 between the last-prompt-token projection onto a
trait vector and the judged trait score of the response, on 7-8B models. This script measures ours with
the library's own functions, so it checks them end to end:

1. extract a ``mean_diff`` vector for a built-in trait's behaviour (`steerlab.methods.extract`; persona
   prompts, or the trait's lock-in scenarios with ``--source scenarios``) at the steering layer and the
   monitor layers;
2. for each condition (steering coefficient x optional persona system prompt) answer the trait's
   open-ended questions (`steerlab.scoring.generate`, greedy) with the steering vector applied at one layer;
3. judge each answer for the trait (`steerlab.judges.judge_responses`; ``--judge hf:smollm2-135m`` by
   default, or ``openai:MODEL`` with ``--judge-base-url``; cached on disk);
4. project the (steered) model's block outputs at the last prompt token onto each monitor layer's unit vector
   (`steerlab.monitor.project`) and print Pearson r with its bootstrap CI and n per layer
   (`steerlab.monitor.trait_correlation`), plus the time taken.

Caveat, printed with the figures: at the steered layer (and after it) the projection includes the added
``c * |v|``, so with coefficients as the only source of variation r partly restates "steering moved the
trait". ``--personas`` adds the persona-vectors protocol (the behaviour's first persona pair as positive /
negative system prompts, and none), where the variation comes from the prompt, not the vector; with
``--coeffs 0 --personas`` it is that protocol alone.

    .venv/bin/python benchmarks/projection_r.py [--trait sycophancy] [--coeffs -4,0,4] [--layer 12]
        [--monitor-layers 8,12,16] [--questions 10] [--tokens 48] [--personas] [--source personas|scenarios]
        [--judge hf:smollm2-135m | --judge openai:MODEL --judge-base-url URL] [--out responses.jsonl]

The ``--out`` file is ``steerlab project --responses`` input (prompt, response, trait, system).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="smollm2-135m")
    parser.add_argument("--trait", default="sycophancy", help="built-in trait or trait file")
    parser.add_argument("--layer", type=int, default=None, help="steering layer (default: 40%% of depth)")
    parser.add_argument(
        "--monitor-layers", default=None, help="layers to project at (default: the steering one)"
    )
    parser.add_argument("--coeffs", type=parse_floats, default=[-4.0, 0.0, 4.0])
    parser.add_argument("--personas", action="store_true", help="also vary the persona system prompt")
    parser.add_argument("--source", default="personas", help="extraction data: personas or scenarios")
    parser.add_argument("--n-pairs", type=int, default=32, help="contrast pairs for the vector")
    parser.add_argument("--questions", type=int, default=None, help="first N of the trait's questions")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per answer")
    parser.add_argument("--judge", default="hf:smollm2-135m")
    parser.add_argument("--judge-base-url", default=None)
    parser.add_argument("--cache-dir", default=None, help="judge cache (default: steerlab's cache)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the judged responses here (jsonl)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    import numpy as np
    import pandas as pd
    import torch

    from steerlab.behaviors import get_behavior
    from steerlab.chat import format_chat
    from steerlab.interventions import ActivationAddition
    from steerlab.judges import JudgeCache, judge_responses, make_judge, make_rubric
    from steerlab.methods import extract
    from steerlab.models import load_model, num_layers
    from steerlab.monitor import project, trait_correlation, unit_vectors
    from steerlab.paths import cache_dir
    from steerlab.scoring import generate
    from steerlab.traits import get_trait

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    split: dict[str, float] = {}

    def lap(label: str, since: float) -> float:
        now = time.perf_counter()
        split[label] = split.get(label, 0.0) + now - since
        return now

    trait = get_trait(args.trait)
    questions = list(trait.questions[: args.questions] if args.questions else trait.questions)
    rubric = make_rubric(trait.name, trait.rubric, where=trait.source)
    behavior = get_behavior(trait.behavior)
    systems: list[str | None] = [None]
    if args.personas:
        pair = behavior.persona_pairs[0]
        systems = [pair.positive, None, pair.negative]

    t = time.perf_counter()
    model, tok = load_model(args.model)
    n_layers = num_layers(model)
    layer = args.layer if args.layer is not None else int(0.4 * n_layers)
    monitor = parse_ints(args.monitor_layers) if args.monitor_layers else [layer]
    t = lap("load", t)
    iv = extract(
        model, tok, behavior, "mean_diff", layers=sorted({layer, *monitor}), n_pairs=args.n_pairs,
        source=args.source, trait=trait.source,
    )  # fmt: skip
    vectors = unit_vectors(iv)
    steer = ActivationAddition({layer: iv.vectors[layer]})
    t = lap("extract", t)

    judge = make_judge(args.judge, base_url=args.judge_base_url)
    cache = JudgeCache(args.cache_dir if args.cache_dir else cache_dir() / "judge")
    t = lap("load", t)
    frames = []
    for coeff in args.coeffs:
        for system in systems:
            texts = [format_chat(tok, q, system) for q in questions]
            with steer.apply(model, coeff):
                answers = [a.strip() for a in generate(model, tok, texts, max_new_tokens=args.tokens)]
                t = lap("generate", t)
                proj = project(
                    model, tok, {k: vectors[k] for k in monitor}, questions, systems=[system] * len(questions)
                )
            t = lap("project", t)
            verdicts = judge_responses(judge, rubric, questions, answers, cache, aspects=("trait",))
            t = lap("judge", t)
            wide = proj.pivot(index="prompt_id", columns="layer", values="prompt_proj")
            frame = pd.DataFrame(
                {
                    "coeff": coeff,
                    "system": system,
                    "prompt": questions,
                    "response": answers,
                    "trait": [np.nan if v.trait.score is None else v.trait.score for v in verdicts],
                }
            )
            for k in monitor:
                frame[f"proj_{k}"] = wide[k].to_numpy()
            frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    long = pd.concat(
        [
            pd.DataFrame({"prompt_id": rows.index, "layer": k, "prompt_proj": rows[f"proj_{k}"]})
            for k in monitor
        ]
    )
    corr = trait_correlation(long, rows["trait"].to_numpy(), n_boot=args.n_boot)
    lap("correlate", t)
    total = time.perf_counter() - started

    print(f"model {args.model} ({n_layers} layers), trait {trait.name}, vector mean_diff from {args.source}, "
          f"steering layer {layer}, coeffs {args.coeffs}, systems {len(systems)}, "
          f"{len(questions)} questions, {args.tokens} new tokens, judge {judge.judge_id}")  # fmt: skip
    by = rows.groupby(["coeff", rows["system"].fillna("(none)")], sort=False)["trait"]
    print("mean judged trait per condition:")
    for (coeff, system), scores in by:
        label = system if len(system) <= 48 else system[:45] + "..."
        print(f"  c={coeff:+g} system={label!r}: {scores.mean():.1f} (n={scores.notna().sum()})")
    print("Pearson r, last-prompt-token projection vs judged trait (95% bootstrap CI, n):")
    for rec in corr.to_dict("records"):
        where = (
            "steered layer"
            if rec["layer"] == layer
            else ("after steering" if rec["layer"] > layer else "before")
        )
        print(f"  layer {rec['layer']} ({where}): r = {rec['r']:.3f} [{rec['ci_low']:.3f}, {rec['ci_high']:.3f}]"
              f", n = {rec['n']}")  # fmt: skip
    if len(args.coeffs) > 1 and any(k >= layer for k in monitor):
        print("  note: at/after the steered layer the projection includes c*|v|: r partly restates the dose")
    print(f"judge cache: {cache.hits} hits, {cache.misses} misses ({cache.path})")
    print(f"time: {total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in split.items()) + ")")
    if args.out:
        with Path(args.out).open("w", encoding="utf-8") as handle:
            for rec in rows.to_dict("records"):
                record = {"prompt": rec["prompt"], "response": rec["response"], "system": rec["system"],
                          "coeff": rec["coeff"], "trait": None if np.isnan(rec["trait"]) else rec["trait"]}  # fmt: skip
                handle.write(json.dumps(record) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
