"""Eval throughput vs the raw forward passes of the same prompts, measured in one run.

An eval of 438 rows (daily-dilemmas-honesty in the schema of the 219-dilemma hub split, built by cycling
steerlab's fixture dilemmas with fresh ids) at three coefficients, under an activation addition, against
the same tokenised prompts pushed through the model with the same batching (length buckets, max 64 rows,
8192 tokens), last-position logits only, under the same intervention. The eval side includes loading and
validating the file, chat formatting, tokenising, choice log-probs and building the table. Target: the
eval's rows/s within 10% of the raw rows/s (ratio >= 0.90).

    .venv/bin/python benchmarks/eval_throughput.py [--repeats 3] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from steerlab import ActivationAddition, load_model
from steerlab.evals import evaluate
from steerlab.evals.common import chat_strings
from steerlab.evals.daily_dilemmas import DailyDilemmasConfig, build_prompts, load_daily_dilemmas
from steerlab.models import hidden_size, model_device, num_layers
from steerlab.paths import package_data
from steerlab.scoring import encode, forward_logits, length_buckets, pad_left

COEFFS = (-1.0, 0.0, 1.0)


def write_rows(path: Path, n_dilemmas: int) -> None:
    """``n_dilemmas`` dilemmas (2 rows each) in the hub schema, cycling the built-in fixture."""
    fixture = [
        json.loads(line) for line in package_data("daily_dilemmas_fixture.jsonl").read_text().splitlines()
    ]
    by_dilemma: dict[int, list[dict]] = {}
    for row in fixture:
        by_dilemma.setdefault(row["dilemma_idx"], []).append(row)
    groups = list(by_dilemma.values())
    with path.open("w") as handle:
        for k in range(n_dilemmas):
            for row in groups[k % len(groups)]:
                handle.write(json.dumps({**row, "dilemma_idx": k + 1}) + "\n")


def raw_forward(model, tok, texts_by_coeff, intervention) -> float:
    """Seconds for the same tokenised prompts through the model: same buckets, last-position logits."""
    device = model_device(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    encoded = {c: encode(tok, texts) for c, texts in texts_by_coeff.items()}  # tokenising is not timed
    start = time.perf_counter()
    with torch.inference_mode():
        for coeff, ids in encoded.items():
            with intervention.apply(model, coeff):
                for batch in length_buckets([len(e) for e in ids], 64, 8192):
                    input_ids, mask = pad_left([ids[i] for i in batch], pad, device)
                    forward_logits(model, input_ids, mask, last_only=True)[:, -1, :].float()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-dilemmas", type=int, default=219, help="2 rows each (default 219 = 438 rows)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating raw/eval runs; the median is used"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, tok = load_model(args.model, device="cpu", dtype="float32")
    layer = num_layers(model) // 2
    vector = torch.randn(hidden_size(model), generator=torch.Generator().manual_seed(0)) * 0.5
    steer = ActivationAddition({layer: vector})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "daily_dilemmas_438.jsonl"
        write_rows(path, args.n_dilemmas)
        config = DailyDilemmasConfig(source=str(path))
        prompts = build_prompts(load_daily_dilemmas(config), config)
        texts = {c: chat_strings(tok, prompts, steer, c) for c in COEFFS}
        n_rows = len(prompts)
        raw_forward(model, tok, {0.0: texts[0.0][:64]}, steer)  # warm-up
        raw_times, eval_times = [], []

        def timed_eval() -> float:
            start = time.perf_counter()
            table = evaluate(model, tok, steer, "daily-dilemmas-honesty", COEFFS, source=str(path))
            assert len(table) == n_rows * len(COEFFS)
            return time.perf_counter() - start

        for repeat in range(args.repeats):  # alternate which goes first, so a drift in load hits both
            if repeat % 2 == 0:
                raw_times.append(raw_forward(model, tok, texts, steer))
                eval_times.append(timed_eval())
            else:
                eval_times.append(timed_eval())
                raw_times.append(raw_forward(model, tok, texts, steer))
    raw_s, eval_s = statistics.median(raw_times), statistics.median(eval_times)
    scored = n_rows * len(COEFFS)
    load = os.getloadavg()
    print(
        f"model {args.model}, {n_rows} rows x {len(COEFFS)} coefficients = {scored} scored rows, "
        f"torch threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"raw forward : {scored / raw_s:7.1f} rows/s  (median of {args.repeats}: "
        f"{', '.join(f'{t:.2f}' for t in raw_times)} s)"
    )
    print(
        f"eval        : {scored / eval_s:7.1f} rows/s  (median of {args.repeats}: "
        f"{', '.join(f'{t:.2f}' for t in eval_times)} s)"
    )
    ratio = raw_s / eval_s
    print(
        f"eval / raw throughput ratio: {ratio:.3f}  (target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
