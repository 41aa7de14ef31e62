"""Contrastive activation methods reading a trait's lock-in scenarios (source=scenarios), on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steerlab.chat import format_chat
from steerlab.interventions import load_intervention
from steerlab.methods import extract
from steerlab.methods.contrast_data import ContrastSourceError
from steerlab.traits import get_trait

SCENARIOS = [
    ("Is my plan perfect?", "Yes, it is flawless and you are a genius, so", "No, it has a gap: the budget"),
    ("The Moon is made of cheese, right?", "Right, and a fine cheese too, which", "No, it is rock, mostly"),
    ("Rate my essay 10/10?", "Absolutely, a perfect ten for", "I would give it a six, because"),
]


def trait_file(tmp_path: Path, scenarios: list[tuple[str, str, str]] = SCENARIOS) -> Path:
    lines = [
        'name = "flattery"',
        'questions = ["Do you like my hat?"]',
        "[rubric]",
        'definition = "flatters"',
    ]
    for user, pos, neg in scenarios:
        lines += ["[[scenarios]]", *(f"{key} = {json.dumps(value)}" for key, value in
                                     (("user", user), ("positive", pos), ("negative", neg)))]  # fmt: skip
    path = tmp_path / "flattery.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def hand_vector(model, tok, scenarios, layer: int, position: str) -> torch.Tensor:
    """mean(h+) - mean(h-) of block outputs, each prompt run alone: the prompt is the user message with the
    locked-in completion as the assistant's text (no system prompt); 'last' reads its last token,
    'mean_response' averages over the completion's own tokens."""

    def act(user: str, completion: str) -> torch.Tensor:
        text = format_chat(tok, user, prefill=completion)
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states[layer + 1][0].double()
        if position == "last":
            return hidden[-1]
        head = tok(format_chat(tok, user, prefill=""), add_special_tokens=False).input_ids
        k = ids.shape[1] - len(head)
        assert k >= 1
        return hidden[-k:].mean(0)

    pos = torch.stack([act(u, p) for u, p, _ in scenarios]).mean(0)
    neg = torch.stack([act(u, n) for u, _, n in scenarios]).mean(0)
    return pos - neg


@pytest.mark.parametrize("position", ["last", "mean_response"])
def test_scenario_mean_diff_equals_hand_computation(model, tok, tmp_path, position):
    path = trait_file(tmp_path)
    iv = extract(
        model, tok, "sycophancy", "mean_diff", source="scenarios", trait=str(path), layers=[1, 2],
        token_position=position,
    )  # fmt: skip
    for layer in (1, 2):
        expected = hand_vector(model, tok, SCENARIOS, layer, position)
        assert torch.allclose(iv.vectors[layer].double(), expected, atol=1e-4, rtol=1e-4)
    assert iv.meta["n_pairs"] == 3
    assert iv.meta["contrast_source"] == "scenarios" and iv.meta["scenario_trait"] == "flattery"
    assert iv.meta["scenario_file"] == str(path)
    assert iv.meta["config"]["source"] == "scenarios"


def test_builtin_trait_defaults_to_the_behaviour_name(model, tok, tmp_path):
    """-b sycophancy --set source=scenarios reads data/traits/sycophancy.toml's scenarios."""
    scenarios = [(s.user, s.positive, s.negative) for s in get_trait("sycophancy").scenarios]
    assert scenarios, "the built-in sycophancy trait has lock-in scenarios"
    iv = extract(model, tok, "sycophancy", "mean_diff", source="scenarios", layers=[2])
    assert iv.meta["scenario_trait"] == "sycophancy" and iv.meta["n_pairs"] == len(scenarios)
    assert torch.allclose(iv.vectors[2].double(), hand_vector(model, tok, scenarios, 2, "last"), atol=1e-4)
    personas = extract(model, tok, "sycophancy", "mean_diff", layers=[2], n_pairs=4)
    assert personas.meta["contrast_source"] == "personas"
    assert personas.meta["data_hash"] != iv.meta["data_hash"]
    assert not torch.allclose(personas.vectors[2], iv.vectors[2])
    iv.save(tmp_path / "iv")
    assert load_intervention(tmp_path / "iv").meta["contrast_source"] == "scenarios"


@pytest.mark.parametrize("method", ["pca", "mean_centred", "sspace", "directional_ablation"])
def test_every_contrastive_method_reads_scenarios(model, tok, tmp_path, method):
    iv = extract(model, tok, "sycophancy", method, source="scenarios", trait=str(trait_file(tmp_path)))
    assert iv.meta["contrast_source"] == "scenarios" and iv.meta["n_pairs"] == 3


def test_n_pairs_samples_scenarios_without_repeats(model, tok, tmp_path):
    path = str(trait_file(tmp_path))
    two = extract(
        model, tok, "sycophancy", "mean_diff", source="scenarios", trait=path, n_pairs=2, layers=[1]
    )
    again = extract(
        model, tok, "sycophancy", "mean_diff", source="scenarios", trait=path, n_pairs=2, layers=[1]
    )
    many = extract(
        model, tok, "sycophancy", "mean_diff", source="scenarios", trait=path, n_pairs=50, layers=[1]
    )
    assert two.meta["n_pairs"] == 2 and many.meta["n_pairs"] == 3
    assert torch.equal(two.vectors[1], again.vectors[1])


def test_trait_without_scenarios_is_one_line(model, tok, tmp_path):
    path = trait_file(tmp_path, scenarios=[])
    with pytest.raises(ContrastSourceError) as error:
        extract(model, tok, "sycophancy", "mean_diff", source="scenarios", trait=str(path), layers=[1])
    message = str(error.value)
    assert "\n" not in message and "'flattery'" in message and "[[scenarios]]" in message
    assert "source=personas" in message


def test_behaviour_that_is_no_trait_is_one_line(model, tok):
    with pytest.raises(ContrastSourceError) as error:
        extract(model, tok, "honesty", "mean_diff", source="scenarios", layers=[1])
    message = str(error.value)
    assert "\n" not in message and "'honesty'" in message and "trait=" in message


def test_unknown_source_fails_at_config(model, tok):
    with pytest.raises(ValueError, match=r"expected one of \['personas', 'scenarios'\], got 'scenario'"):
        extract(model, tok, "sycophancy", "mean_diff", source="scenario")


def test_cli_extract_from_scenarios(tok, tmp_path, capsys):
    from steerlab.cli import main
    from steerlab.testing import tiny_model

    model_dir = tmp_path / "model"
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "iv"

    def args(behavior: str, output: Path, model: Path = model_dir) -> list[str]:
        return ["extract", "-m", str(model), "-b", behavior, "--method", "mean_diff", "-o", str(output),
                "--set", "source=scenarios", "--set", "layers=[1]"]  # fmt: skip

    assert main(args("sycophancy", out)) == 0
    assert load_intervention(out).meta["scenario_trait"] == "sycophancy"
    # checked before the model loads: the model path below does not exist, and the error is about the trait
    assert main(args("honesty", tmp_path / "bad", tmp_path / "no-such-model")) != 0
    assert not (tmp_path / "bad").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert "'honesty' is not a built-in trait" in err[-1]
