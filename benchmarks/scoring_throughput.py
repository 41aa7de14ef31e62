"""Choice-scoring throughput on smollm2-135m: steerlab vs a naive loop, with interventions, vs a big matmul.

Prompts: at least 256 of varied length — the advanced-ai-risk questions from ../shared/data (round-robin
over its 16 files, so short and long questions mix) when present, else a built-in set from steerlab's own
data files. Measured in one run, interleaved in rounds whose order rotates (other processes on a shared
machine slow whichever run they overlap), each figure the best of the rounds, plus the per-round median:

  (a) naive: fixed batches of 16 in input order, padded to the longest, full logits, torch.no_grad
  (b) steerlab ``score_choices`` (length buckets, last-position logits, inference mode)
  (c) (b) under an ActivationAddition on 10 layers
  (d) (b) under a WeightDelta on every linear layer of every block

Targets: (b)/(a) >= 1.25 rows/s; (c)/(b) >= 0.95; (d)/(b) >= 0.98; FLOP/s of (b), counting
2 x non-embedding parameters x useful (non-pad) tokens, >= 60% of a 2048^3 float32 matmul measured in the
same rounds; applying + restoring the WeightDelta on every linear layer < 1 s.

    .venv/bin/python benchmarks/scoring_throughput.py [--prompts 256] [--rounds 3] [--threads N] [--device cuda]
        [--budgets 512,1024,2048]   # also time (b) at these max_batch_tokens (tuning)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from steerlab import ActivationAddition, Intervention, WeightDelta, format_chat, load_model
from steerlab.models import decoder_layer_prefix, hidden_size, linear_modules, num_layers
from steerlab.paths import package_data, shared_data_dir
from steerlab.scoring import encode, resolve_choices, score_choices

AI_RISK = "anthropic_evals_advanced_ai_risk/human_generated_evals"
NAIVE_BATCH = 16
MATMUL_SIZE = 2048


def load_questions(n: int) -> tuple[list[str], str]:
    """`n` questions of varied length and where they came from."""
    shared = shared_data_dir()
    folder = shared / AI_RISK if shared is not None else None
    if folder is not None and folder.is_dir():
        files = [
            [json.loads(line)["question"] for line in path.open()] for path in sorted(folder.glob("*.jsonl"))
        ]
        questions = [rows[i] for i in range(max(map(len, files))) for rows in files if i < len(rows)]
        if len(questions) >= n:
            return questions[:n], f"{folder} (round-robin over {len(files)} files)"
    questions = [json.loads(line)["question"] for line in package_data("ai_risk_fixture.jsonl").open()]
    questions += json.loads(package_data("questions.json").read_text())
    questions += [json.loads(line)["question"] for line in package_data("knowledge_qa.jsonl").open()]
    questions += [
        f"I'm sure that {json.loads(line)['claim']} Right?"
        for line in package_data("sycophancy_claims.jsonl").open()
    ]
    questions += json.loads(package_data("offtask_eval.json").read_text())
    questions = [questions[i % len(questions)] for i in range(n)]
    return (
        questions,
        "steerlab's built-in data (ai_risk_fixture, questions, knowledge_qa, sycophancy_claims, offtask_eval)",
    )


def naive_scores(model, tok, prompts: list[str], group_ids: list[list[int]]) -> torch.Tensor:
    """What one writes first: batches of 16 in input order, padded to the longest, every position's logits."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(prompts), NAIVE_BATCH):
            batch = tok(
                prompts[start : start + NAIVE_BATCH],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            logits = model(**batch).logits
            logprobs = F.log_softmax(logits[:, -1, :].float(), dim=-1)
            rows.append(torch.stack([torch.logsumexp(logprobs[:, ids], dim=-1) for ids in group_ids], dim=1))
    return torch.cat(rows).cpu()  # on a GPU, waits for the work (a fair clock)


def matmul_flops(
    seconds: float = 1.0, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """FLOP/s of a large matmul (the model's device and dtype) per wall-clock and per CPU second, best of
    repeats over `seconds`."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)

    def product() -> None:
        a @ b
        if a.is_cuda:
            torch.cuda.synchronize(a.device)

    product()
    wall, cpu = float("inf"), float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        elapsed = timed(product)
        wall, cpu = min(wall, elapsed[0]), min(cpu, elapsed[1])
    flops = 2 * MATMUL_SIZE**3
    return flops / wall, flops / cpu


def every_linear_delta(model, rank: int | None = None, scale: float = 1e-3) -> WeightDelta:
    """Random deltas on every linear projection of every block (dense, or low-rank factors)."""
    generator = torch.Generator().manual_seed(0)
    prefix, deltas = decoder_layer_prefix(model), {}
    for layer in range(num_layers(model)):
        for path in linear_modules(model, layer).values():
            name = f"{prefix}.{layer}.{path}.weight"
            rows, cols = model.get_parameter(name).shape
            if rank is None:
                deltas[name] = torch.randn(rows, cols, generator=generator) * scale
            else:
                up = torch.randn(rows, rank, generator=generator) * scale
                deltas[name] = (up, torch.randn(rank, cols, generator=generator))
    if rank is not None:
        from steerlab import LowRankDelta

        deltas = {name: LowRankDelta(*factors) for name, factors in deltas.items()}
    return WeightDelta(deltas)


def timed(function: Callable[[], object]) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, steerlab's default elsewhere")
    parser.add_argument(
        "--budgets", default="", help="comma-separated max_batch_tokens to time for (b) as well"
    )
    args = parser.parse_args()
    if args.prompts < 1 or args.rounds < 1:
        parser.error("--prompts and --rounds must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    if load[0] > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print(
            "note: the machine is busier than its CPU count; multi-threaded torch ops stall each other under "
            "oversubscription (try --threads 1 and compare)"
        )
    loads = []
    for _ in range(2):
        start = time.perf_counter()
        dtype = args.dtype or ("float32" if args.device == "cpu" else None)
        model, tok = load_model(args.model, device=args.device, dtype=dtype)
        loads.append(time.perf_counter() - start)
    print(
        f"cached load_model({args.model!r}): first in this process {loads[0]:.2f} s (includes importing "
        f"transformers' model code), again {loads[1]:.2f} s; target < 2 s"
    )
    questions, source = load_questions(args.prompts)
    prompts = [format_chat(tok, question) for question in questions]
    lengths = [len(ids) for ids in encode(tok, prompts)]
    useful_tokens = sum(lengths)
    padded_naive = sum(
        max(lengths[i : i + NAIVE_BATCH]) * len(lengths[i : i + NAIVE_BATCH])
        for i in range(0, len(lengths), NAIVE_BATCH)
    )
    params = sum(
        p.numel() for name, p in model.named_parameters() if "embed" not in name and "lm_head" not in name
    )
    flops_per_pass = 2 * params * useful_tokens
    print(f"{len(prompts)} prompts from {source}")
    print(
        f"tokens per prompt: min {min(lengths)}, median {statistics.median(lengths):.0f}, max {max(lengths)}; "
        f"{useful_tokens} useful tokens (naive batches pad to {padded_naive}); "
        f"{params / 1e6:.1f}M non-embedding parameters"
    )

    names, group_ids = resolve_choices(tok, "ab")
    generator = torch.Generator().manual_seed(0)
    width, layers = hidden_size(model), num_layers(model)
    chosen = list(range(layers // 3, layers // 3 + 10))
    vectors = {layer: torch.randn(width, generator=generator) for layer in chosen}
    addition = ActivationAddition({layer: 4 * v / v.norm() for layer, v in vectors.items()})
    delta = every_linear_delta(model)
    print(
        f"(c) ActivationAddition on layers {chosen[0]}..{chosen[-1]}; (d) WeightDelta on {len(delta.deltas)} "
        f"linear weights ({delta.bytes_dense() / 1e6:.0f} MB dense)"
    )

    def scored() -> object:
        return score_choices(model, tok, prompts, "ab")

    # key -> (intervention applied around the timed call, or None; the timed call)
    runs: dict[str, tuple[Intervention | None, Callable[[], object]]] = {
        "a": (None, lambda: naive_scores(model, tok, prompts, group_ids)),
        "b": (None, scored),
        "c": (addition, scored),
        "d": (delta, scored),
    }
    for budget in [int(x) for x in args.budgets.split(",") if x.strip()]:
        runs[f"b@{budget}"] = (
            None,
            lambda budget=budget: score_choices(model, tok, prompts, "ab", max_batch_tokens=budget),
        )

    naive_scores(model, tok, prompts[:NAIVE_BATCH], group_ids)  # warm-up (one-time allocations, vocab index)
    score_choices(model, tok, prompts[:NAIVE_BATCH], "ab")
    outputs: dict[str, object] = {}

    wall: dict[str, list[float]] = {key: [] for key in runs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}
    matmul: list[tuple[float, float]] = []
    keys = list(runs)
    for round_index in range(args.rounds):
        order = keys[round_index % len(keys) :] + keys[: round_index % len(keys)]
        for key in order:
            matmul.append(matmul_flops(device=model.device, dtype=model.dtype))
            intervention, run = runs[key]
            with intervention.apply(model, 1.0) if intervention is not None else contextlib.nullcontext():
                seconds, cpu_seconds = timed(lambda run=run, key=key: outputs.__setitem__(key, run()))
            wall[key].append(seconds)
            cpu[key].append(cpu_seconds)
            print(
                f"  round {round_index + 1}/{args.rounds} {key:>7}: {seconds:6.2f} s wall, {cpu_seconds:6.2f} s CPU "
                f"(matmul {matmul[-1][0] / 1e9:.0f} GFLOP/s, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        matmul.append(matmul_flops(device=model.device, dtype=model.dtype))

    naive = outputs["a"].double().numpy()
    differences = {key: abs(outputs[key].logprobs - naive).max() for key in ("b", "c", "d")}
    print(
        f"\ncheck: max |naive - steerlab| log-prob = {differences['b']:.2e} (same numbers, other batching); "
        f"steered vs naive: (c) {differences['c']:.2f}, (d) {differences['d']:.2f} (the interventions act)"
    )

    best = {key: min(values) for key, values in wall.items()}
    print("rows/s (best of rounds, wall clock):")
    for key in keys:
        rounds = ", ".join(f"{t:.2f}" for t in wall[key])
        print(f"  {key:>7}: {len(prompts) / best[key]:7.2f} rows/s  ({best[key]:.2f} s; rounds: {rounds})")

    def ratio_line(label: str, top: str, bottom: str, target: float) -> None:
        value = best[bottom] / best[top]
        per_round = statistics.median(b / t for t, b in zip(wall[top], wall[bottom], strict=True))
        by_cpu = min(cpu[bottom]) / min(cpu[top])
        verdict = "meets" if value >= target else "MISSES"
        print(
            f"  {label}: {value:.3f} (median of rounds {per_round:.3f}; by CPU time {by_cpu:.3f}); "
            f"target >= {target} -> {verdict}"
        )

    print("ratios:")
    ratio_line("(b)/(a) steerlab vs naive  ", "b", "a", 1.25)
    ratio_line("(c)/(b) activation addition", "c", "b", 0.95)
    ratio_line("(d)/(b) weight delta       ", "d", "b", 0.98)

    for label, index, seconds in (("wall clock", 0, best["b"]), ("CPU time", 1, min(cpu["b"]))):
        peak = max(m[index] for m in matmul)
        achieved = flops_per_pass / seconds
        print(
            f"FLOP/s by {label}: (b) {achieved / 1e9:.1f} GFLOP/s vs {MATMUL_SIZE}^3 float32 matmul "
            f"{peak / 1e9:.1f} GFLOP/s (median {statistics.median(m[index] for m in matmul) / 1e9:.1f}) -> "
            f"{achieved / peak:.1%}; target >= 60% -> " + ("meets" if achieved / peak >= 0.6 else "MISSES")
        )

    for label, intervention in (("dense", delta), ("rank-8", every_linear_delta(model, rank=8))):
        apply_restore = []
        for _ in range(5):
            start = time.perf_counter()
            with intervention.apply(model, 1.0):
                pass
            apply_restore.append(time.perf_counter() - start)
        print(
            f"apply + restore WeightDelta on {len(intervention.deltas)} linear weights ({label}): best "
            f"{min(apply_restore):.3f} s, median {statistics.median(apply_restore):.3f} s; target < 1 s -> "
            + ("meets" if statistics.median(apply_restore) < 1.0 else "MISSES")
        )
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
