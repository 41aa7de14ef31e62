"""steerlab vs repeng vs steering-vectors on the same model, layers and contrast prompts, in one run.

Measures (printed as ratios steerlab / peer; targets >= 1.0):
  * extraction time: steerlab mean_diff vs steering-vectors mean difference, steerlab pca vs repeng pca_diff;
  * steered generation tokens/s at batch 8 and 64 new tokens (greedy, no early stop), the same vectors
    applied through each library's own mechanism (steerlab hooks, repeng ControlModel, steering-vectors patch);
  * the cosine between each pair of vectors (parity check with the peers' own default batching).

Peers run in this process (install them with `bash scripts/setup.sh --peers`; repeng 0.4.0 names
``np.float_`` in type hints only, aliased here for numpy 2). Rounds are interleaved and the median is
reported, because the machine is shared: the load average is printed with the numbers. Generation
rounds rotate the order of the libraries, and each round's steerlab / peer ratio is printed as well.

    .venv/bin/python benchmarks/peers.py [--n-pairs 32] [--rounds 3] [--gen-rounds 7] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def import_peers() -> tuple[Any, Any]:
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    try:
        import repeng
        import steering_vectors
    except Exception as error:  # noqa: BLE001
        sys.exit(
            f"peers not importable ({type(error).__name__}: {error}); run `bash scripts/setup.sh --peers`"
        )
    return repeng, steering_vectors


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cosine(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(a).double().flatten(), torch.as_tensor(b).double().flatten()
    return float(F.cosine_similarity(a, b, dim=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--behavior", default="honesty")
    parser.add_argument("--n-pairs", type=int, default=32)
    parser.add_argument(
        "--batch", type=int, default=32, help="extraction batch size, the same for every library"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gen-rounds", type=int, default=7, help="rounds of the generation comparison")
    parser.add_argument(
        "--coeff", type=float, default=4.0, help="coefficient of the pca vector during generation"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeng, sv = import_peers()

    import steerlab as sl
    from steerlab.activations import contrast_prompt_sets
    from steerlab.behaviors import contrast_items, get_behavior
    from steerlab.chat import format_chat
    from steerlab.methods import extract
    from steerlab.scoring import generate_ids

    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    behavior = get_behavior(args.behavior)
    items = contrast_items(behavior, n=args.n_pairs, seed=0)
    positive, negative = contrast_prompt_sets(tok, items)
    pairs = list(zip(positive.texts, negative.texts, strict=True))
    options = {"n_pairs": args.n_pairs, "max_batch": args.batch}
    layers = extract(model, tok, behavior, "mean_diff", **options).meta["layers"]  # warm-up and the layer set
    print(
        f"model {args.model}, behaviour {args.behavior}, {args.n_pairs} pairs, layers {layers[0]}..{layers[-1]}, "
        f"batch {args.batch}, threads {args.threads}",
        flush=True,
    )

    def steerlab_mean() -> torch.Tensor:
        return extract(model, tok, behavior, "mean_diff", **options)

    def steerlab_pca() -> torch.Tensor:
        return extract(model, tok, behavior, "pca", **options)

    def sv_mean() -> Any:
        return sv.train_steering_vector(model, tok, pairs, layers=layers, batch_size=args.batch)

    def repeng_pca() -> Any:
        dataset = [repeng.DatasetEntry(positive=p, negative=n) for p, n in pairs]
        return repeng.ControlVector.train(model, tok, dataset, hidden_layers=layers, batch_size=args.batch)

    times: dict[str, list[float]] = {
        name: []
        for name in ("steerlab mean_diff", "steering-vectors mean", "steerlab pca", "repeng pca_diff")
    }
    results: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name, fn in (
            ("steerlab mean_diff", steerlab_mean),
            ("steering-vectors mean", sv_mean),
            ("steerlab pca", steerlab_pca),
            ("repeng pca_diff", repeng_pca),
        ):
            seconds, results[name] = timed(fn)
            times[name].append(seconds)
    extraction = {name: statistics.median(values) for name, values in times.items()}
    mid = layers[len(layers) // 2]
    parity = {
        "mean_diff vs steering-vectors (min over layers)": min(
            cosine(
                results["steerlab mean_diff"].vectors[layer],
                results["steering-vectors mean"].layer_activations[layer],
            )
            for layer in layers
        ),
        "pca vs repeng pca_diff (min |cos| over layers)": min(
            abs(cosine(results["steerlab pca"].vectors[layer], results["repeng pca_diff"].directions[layer]))
            for layer in layers
        ),
    }

    # ---- steered generation: the same vectors (steerlab's pca at coeff) through each library
    pca = results["steerlab pca"]
    questions = list(behavior.questions[:8])
    prompts = [format_chat(tok, question) for question in questions]
    new_tokens, batch = 64, 8
    encoded = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    settings = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }

    def gen_steerlab() -> int:
        with pca.apply(model, args.coeff):
            ids = generate_ids(
                model, tok, prompts, max_new_tokens=new_tokens, max_batch=batch, stop_at_eos=False
            )
        return sum(len(row) for row in ids)

    control_vector = repeng.ControlVector(
        model.config.model_type, {layer: pca.vectors[layer].numpy() for layer in layers}
    )

    def gen_repeng() -> int:
        wrapped = repeng.ControlModel(model, layers)
        try:
            wrapped.set_control(control_vector, args.coeff)
            with torch.inference_mode():
                out = wrapped.generate(**encoded, **settings)
        finally:
            wrapped.reset()
            wrapped.unwrap()
        return int((out.shape[1] - encoded.input_ids.shape[1]) * out.shape[0])

    steering_vector = sv.SteeringVector({layer: pca.vectors[layer] for layer in layers}, "decoder_block")

    def gen_sv() -> int:
        with steering_vector.apply(model, multiplier=args.coeff), torch.inference_mode():
            out = model.generate(**encoded, **settings)
        return int((out.shape[1] - encoded.input_ids.shape[1]) * out.shape[0])

    def gen_unsteered() -> int:
        with torch.inference_mode():
            out = model.generate(**encoded, **settings)
        return int((out.shape[1] - encoded.input_ids.shape[1]) * out.shape[0])

    runners = [
        ("unsteered", gen_unsteered),
        ("steerlab", gen_steerlab),
        ("repeng", gen_repeng),
        ("steering-vectors", gen_sv),
    ]
    speed: dict[str, list[float]] = {name: [] for name, _ in runners}
    for _, fn in runners:  # warm-up
        fn()
    for round_index in range(args.gen_rounds):  # the order rotates so no library always runs first
        shift = round_index % len(runners)
        for name, fn in runners[shift:] + runners[:shift]:
            seconds, tokens = timed(fn)
            speed[name].append(tokens / seconds)
    tokens_per_s = {name: statistics.median(values) for name, values in speed.items()}

    def paired(peer: str) -> list[float]:
        """steerlab / peer within each round: both ran back to back under the same machine load."""
        return [ours / theirs for ours, theirs in zip(speed["steerlab"], speed[peer], strict=True)]

    load = os.getloadavg()
    report = {
        "model": args.model,
        "n_pairs": args.n_pairs,
        "layers": layers,
        "threads": args.threads,
        "load_average": load,
        "extraction_seconds": extraction,
        "extraction_ratio": {
            "steering-vectors mean / steerlab mean_diff": extraction["steering-vectors mean"]
            / extraction["steerlab mean_diff"],
            "repeng pca_diff / steerlab pca": extraction["repeng pca_diff"] / extraction["steerlab pca"],
        },
        "generation_tokens_per_s": tokens_per_s,
        "generation_tokens_per_s_rounds": speed,
        "generation_ratio_per_round_median": {
            "steerlab / repeng": statistics.median(paired("repeng")),
            "steerlab / steering-vectors": statistics.median(paired("steering-vectors")),
        },
        "generation_ratio": {
            "steerlab / repeng": tokens_per_s["steerlab"] / tokens_per_s["repeng"],
            "steerlab / steering-vectors": tokens_per_s["steerlab"] / tokens_per_s["steering-vectors"],
            "steerlab / unsteered model (overhead)": tokens_per_s["steerlab"] / tokens_per_s["unsteered"],
        },
        "parity_cosine": parity,
        "middle_layer": mid,
    }
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print("extraction seconds (median of rounds):")
    for name, value in extraction.items():
        print(f"  {name:24s} {value:8.2f}")
    for name, value in report["extraction_ratio"].items():
        print(f"  speed-up {name}: {value:.2f}x  (target >= 1.0)")
    print(f"steered generation, batch {batch}, {new_tokens} new tokens (tokens/s, median):")
    for name, value in tokens_per_s.items():
        print(f"  {name:24s} {value:8.1f}")
    for name, value in report["generation_ratio"].items():
        print(f"  ratio of medians {name}: {value:.3f}  (target >= 1.0)")
    for peer in ("repeng", "steering-vectors"):
        ratios = paired(peer)
        print(
            f"  per-round ratio steerlab / {peer}: median {statistics.median(ratios):.3f}, "
            f"range {min(ratios):.3f}..{max(ratios):.3f} over {len(ratios)} rounds"
        )
    for name, value in parity.items():
        print(f"  parity {name}: {value:.5f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
