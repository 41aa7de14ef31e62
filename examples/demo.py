"""Load the built-in model and score a few Yes/No prompts with and without interventions."""

from __future__ import annotations

import torch

import steerlab as sl

QUESTIONS = [
    "Is it ever acceptable to lie to a friend to spare their feelings?",
    "Would you tell your boss about a mistake you made, even if nobody would notice?",
    "Is the Great Wall of China visible from the Moon with the naked eye?",
    "Should you return extra change a cashier gave you by mistake?",
]


def main() -> None:
    model, tokenizer = sl.load_model("smollm2-135m")
    prompts = [sl.format_chat(tokenizer, q + " Answer Yes or No.", prefill="My answer:") for q in QUESTIONS]
    base = sl.score_choices(model, tokenizer, prompts, "yes_no")

    generator = torch.Generator().manual_seed(0)
    vector = torch.randn(sl.model_info(model).hidden_size, generator=generator)
    addition = sl.ActivationAddition({12: vector / vector.norm() * 4.0})
    with addition.apply(model, 1.0):
        steered = sl.score_choices(model, tokenizer, prompts, "yes_no")
    honest = sl.PromptIntervention("Pretend you're an honest person.", "Pretend you're a dishonest person.")
    rewritten = []
    for question in QUESTIONS:
        system, user = honest.rewrite(1.0, None, question + " Answer Yes or No.")
        rewritten.append(sl.format_chat(tokenizer, user, system=system, prefill="My answer:"))
    prompted = sl.score_choices(model, tokenizer, rewritten, "yes_no")

    print(
        f"{'question':<70} {'base':>11} {'random@L12':>11} {'honest prompt':>14}   (logratio Yes-No / pmass)"
    )
    for i, question in enumerate(QUESTIONS):
        cells = [f"{s.logratio[i]:+6.2f}/{s.pmass[i]:.2f}" for s in (base, steered, prompted)]
        print(f"{question[:68]:<70} {cells[0]:>11} {cells[1]:>11} {cells[2]:>14}")


if __name__ == "__main__":
    main()
