"""Per eval suite: how many of its prompt tokens are the shared chat head, and its c = 0 time per batch budget.

Prints, for each suite, the rows, mean prompt length, the tokens every prompt starts with (the share that
`steerlab.prefix_kv` runs once per batch), and the wall time of `evaluate(..., coeffs=[0])` at each
`--budgets` token budget per batch (the first budget is timed twice; compare the second timing).

    .venv/bin/python benchmarks/eval_tokens.py [--evals sycophancy-claims,daily-dilemmas-honesty,ai-risk-ab,tiny-mfv]
        [--budgets 8192,1024,2048,8192] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

OPTIONS = {
    "ai-risk-ab": {"n_per_file": 15},
    "tiny-mfv": {
        "sets": ["classic"],
        "conditions": ["other_violate"],
        "foundations": ["Fairness", "Sanctity"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--evals", default="sycophancy-claims,daily-dilemmas-honesty,ai-risk-ab,tiny-mfv")
    parser.add_argument("--budgets", default="8192,1024,2048,8192")
    parser.add_argument("--behavior", default="honesty")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    import steerlab as sl
    import steerlab.scoring as scoring
    from steerlab.prefix_kv import common_prefix_length

    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)
    model, tok = sl.load_model("smollm2-135m")
    encoded: list[list[list[int]]] = []
    original = scoring.encode

    def recording_encode(tokenizer, prompts):  # type: ignore[no-untyped-def]
        ids = original(tokenizer, prompts)
        encoded.append(ids)
        return ids

    for name in args.evals.split(","):
        options = OPTIONS.get(name, {})
        scoring.encode = recording_encode
        encoded.clear()
        sl.evaluate(model, tok, None, name, coeffs=(0.0,), behavior=args.behavior, **options)
        scoring.encode = original
        rows = encoded[0]
        total = sum(len(r) for r in rows)
        head = common_prefix_length(rows)
        print(
            f"{name}: {len(rows)} prompts, mean {total / len(rows):.1f} tokens, shared head {head} tokens "
            f"({head * len(rows) / total:.0%} of all)",
            flush=True,
        )
        for budget in (int(b) for b in args.budgets.split(",")):
            started = time.perf_counter()
            sl.evaluate(
                model,
                tok,
                None,
                name,
                coeffs=(0.0,),
                behavior=args.behavior,
                max_batch_tokens=budget,
                **options,
            )
            print(f"  budget {budget}: {time.perf_counter() - started:.2f} s", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
