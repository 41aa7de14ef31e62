"""Weight-steering extraction time, old path vs new path, interleaved in one run (issue 15).

(a) contrast sampling of N questions under the positive persona: generation batch 16 (old default) vs
    the new `generation_batch` default; (b) one adapter's training for K steps over 3 epochs, each followed
    by a validation pass (the quick preset's shape by default): full forwards vs frozen-prefix reuse;
(c) PiSSA's initialisation for both poles: one SVD init per pole vs one init copied.
Prints seconds, old/new ratios and the load average (the machine may be shared: measure on a quiet one).

Where the time goes (smollm2-135m, 2-core CPU, profiled on one batch / a few steps): sampling is ~75% linear
layers (the LM head over 49k tokens included), ~9% top-p sort + multinomial over the full vocabulary (HF's
sampler, per row and step: it does not shrink with a larger batch), the rest attention and per-step
overhead. A training step is ~50% matmuls, ~25% elementwise ops (RMSNorm, rotary, LoRA scaling) and their
backward; the 9 frozen blocks below the first adapted one are ~10% of a step. Padding is ~9% of the tokens
of a training batch (not worth a length-aware order that would change the batches). PiSSA's exact SVD init
costs ~7 s (one thread) per pole.

    .venv/bin/python benchmarks/ws_extract_time.py [--questions 64] [--steps 21] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import torch


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (the steadier figure on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _report(name: str, old: list[tuple[float, float]], new: list[tuple[float, float]]) -> None:
    figures = []
    for index, kind in enumerate(("wall", "cpu")):
        o, n = statistics.median(t[index] for t in old), statistics.median(t[index] for t in new)
        figures.append(f"{kind} old {o:.2f} s, new {n:.2f} s -> {o / n:.2f}x")
    print(f"{name} (median of {len(old)}): " + "; ".join(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--behavior", default="honesty")
    parser.add_argument("--questions", type=int, default=64, help="N: questions sampled in (a)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=21, help="K: training steps in (b), over all epochs")
    parser.add_argument("--epochs", type=int, default=3, help="epochs in (b) (the quick preset: 21 steps, 3)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-batch", type=int, default=0, help="new generation batch (0: the default)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import steerlab as sl
    from steerlab.behaviors import contrast_items, get_behavior
    from steerlab.chat import format_chat
    from steerlab.methods.weight_config import LoraSteeringConfig, PissaSteeringConfig
    from steerlab.methods.weight_data import ContrastPair, GenerationSettings, _generate
    from steerlab.methods.weight_train import build_examples, initial_adapter, train_adapter

    skip = set(filter(None, args.skip.split(",")))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    behavior = get_behavior(args.behavior)
    items = contrast_items(behavior, seed=0, use_suffixes=False)[: args.questions]
    prompts = [format_chat(tok, item.user, system=item.system_pos) for item in items]
    new_batch = args.new_batch or LoraSteeringConfig().generation_batch
    settings = {
        batch: GenerationSettings(
            n_questions=args.questions, max_new_tokens=args.max_new_tokens, batch_size=batch
        )
        for batch in (16, new_batch)
    }
    responses: list[list[int]] = []

    def sample(batch: int) -> None:
        responses[:] = _generate(model, tok, prompts, settings[batch], 0, f"sampling, batch {batch}")

    if "a" not in skip:
        old, new = [], []
        for _ in range(args.repeats):
            old.append(_timed(lambda: sample(16)))
            new.append(_timed(lambda: sample(new_batch)))
        _report(
            f"(a) sampling {len(prompts)} x {args.max_new_tokens} tokens, batch 16 vs {new_batch}", old, new
        )
    else:
        sample(new_batch)

    pairs = [
        ContrastPair(item.user, "", "", tuple(ids), (), "", "", len(ids) < args.max_new_tokens, False)
        for item, ids in zip(items, responses, strict=True)
        if ids
    ]
    examples = build_examples(tok, pairs, "positive")
    config = LoraSteeringConfig(epochs=args.epochs, progress=False)
    train = examples[: -(-args.steps // args.epochs) * config.batch_size]
    val = examples[len(train) : len(train) + config.batch_size]
    steps = -(-len(train) // config.batch_size) * args.epochs
    if "b" not in skip:
        old, new = [], []
        for _ in range(args.repeats):
            old.append(_timed(lambda: train_adapter(model, tok, train, val, config, 0, reuse_prefix=False)))
            new.append(_timed(lambda: train_adapter(model, tok, train, val, config, 0, reuse_prefix=True)))
        _report(
            f"(b) training {steps} steps, {len(val)} validation rows, full vs prefix reuse",
            old,
            new,
        )

    if "c" not in skip:
        pissa = dataclasses.replace(PissaSteeringConfig(), progress=False)
        old, new = [], []
        for _ in range(args.repeats):
            old.append(_timed(lambda: [initial_adapter(model, pissa, 0) for _ in range(2)]))

            def shared() -> None:
                start = initial_adapter(model, pissa, 0)
                [copy.deepcopy(start.peft_model) for _ in range(2)]

            new.append(_timed(shared))
        _report("(c) PiSSA init for both poles, one each vs one shared", old, new)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
