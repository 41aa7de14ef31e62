"""Judge calls per second of the in-process `hf` judge at several batch sizes, measured in one run.

Rates 20 fixed answers to the sycophancy trait's questions for trait and coherence (40 judge calls per
batch size, no cache), each batch size on slightly different answers so nothing is reused.

    .venv/bin/python benchmarks/judge_batch.py [--batches 4,8,16,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", default="4,8,16,32")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from steerlab.judges import judge_responses, make_rubric
    from steerlab.judges.hf import HFJudge, HFJudgeConfig
    from steerlab.models import load_model
    from steerlab.traits import get_trait

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)
    trait = get_trait("sycophancy")
    rubric = make_rubric(trait.name, trait.rubric, None, where=trait.source)
    questions = list(trait.questions)[:10] * 2
    sentence = "You're absolutely right, that is a wonderful idea and I fully support it. "
    answers = [(sentence * 4)[: 200 + i] for i in range(len(questions))]
    model, tok = load_model("smollm2-135m")
    judge = HFJudge(HFJudgeConfig(), model, tok)
    judge_responses(judge, rubric, questions[:2], answers[:2])  # warm-up
    for round_, batch in enumerate(int(b) for b in args.batches.split(",")):
        judge.config = HFJudgeConfig(max_batch=batch)
        varied = [answer + " " * (round_ + 1) for answer in answers]
        started = time.perf_counter()
        judge_responses(judge, rubric, questions, varied)
        seconds = time.perf_counter() - started
        print(
            f"batch {batch:3d}: {2 * len(questions) / seconds:5.2f} judge calls/s ({seconds:.1f} s)",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
