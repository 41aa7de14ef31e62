"""The published-experiment presets: each parses, names registered things and plans the expected units;
a tiny-model run of each (methods and rows cut down) renders the preset's declared report table."""

from __future__ import annotations

import dataclasses

import pytest

from steerlab.bench import load_preset, run_bench
from steerlab.bench.config import validate_names
from steerlab.bench.plan import build_plan

PUBLISHED = ("weight-steering", "trad-care", "authority", "unsupervised")


def _expected_units(config) -> int:
    total = 0
    for method in config.methods:
        variants = config.null.count(method) if method in config.null.methods else 1
        selects = 1 if method in config.selection.methods else 0
        total += len(config.seeds) * (1 + selects + variants * (1 + len(config.evals)))
    return total


@pytest.mark.parametrize("name", PUBLISHED)
def test_preset_parses_and_plans(name):
    config = load_preset(name)
    validate_names(config)
    plan = build_plan(config)
    assert len(plan) == _expected_units(config) and len(plan) > 20
    assert config.report["tables"], "a published preset declares its report table"
    for table in config.report["tables"]:
        assert table["eval"] in config.evals


def test_unsupervised_preset_evaluates_every_vector_of_each_bank():
    config = load_preset("unsupervised")
    calibrate = [u for u in build_plan(config) if u.kind == "calibrate"]
    per_method = {m: sum(u.method == m for u in calibrate) for m in config.methods}
    assert per_method == {"melbo": 12, "power_iter": 8, "random": 4}


SMALL = {  # cheap methods and options per preset for the tiny model
    "weight-steering": (["prompt-simple", "mean_diff"], {}),
    "trad-care": (["prompt-simple", "mean_diff", "random"], {"random": {"n_pairs": 4, "n_vectors": 2}}),
    "authority": (["prompt-simple", "mean_diff", "random"], {"random": {"n_pairs": 4, "n_vectors": 2}}),
    "unsupervised": (
        ["melbo", "power_iter", "random"],
        {
            "melbo": {"n_vectors": 2, "steps": 3, "sweep_steps": 2, "n_prompts": 1},
            "power_iter": {"n_vectors": 2, "iterations": 2, "n_prompts": 1},
            "random": {"n_pairs": 4, "n_vectors": 2},
        },
    ),
}
ROWS = {
    "daily-dilemmas-honesty": {"n_dilemmas": 4},
    "sycophancy-claims": {"split": "heldout"},
    "tiny-mfv": {"foundations": ["Authority", "Care", "Sanctity"], "conditions": ["other_violate"]},
    "ai-risk-ab": {"n_per_file": 4},
}


@pytest.fixture()
def mfv_tiny():
    """The tiny model with 'true' / 'false' as single tokens (tiny-mfv scores JSON booleans)."""
    from steerlab.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tok.add_tokens(["true", "false"])
    return tiny_model("llama", vocab_size=len(tok)), tok


@pytest.mark.parametrize("name", PUBLISHED)
def test_tiny_run_renders_the_declared_table(name, mfv_tiny, tmp_path):
    model, tok = mfv_tiny
    config = load_preset(name)
    methods, options = SMALL[name]
    first = config.report["tables"][0]
    config.methods = methods
    config.evals = [first["eval"]]
    config.headline_eval = first["eval"]
    config.method_options = {m: {"n_pairs": 4} if m == "mean_diff" else dict(o) for m, o in options.items()}
    config.method_options.setdefault("mean_diff", {"n_pairs": 4}) if "mean_diff" in methods else None
    config.eval_options = {
        first["eval"]: {**config.eval_options.get(first["eval"], {}), **ROWS[first["eval"]]}
    }
    if name == "authority":
        config.eval_options["tiny-mfv"]["foundations"] = ["Authority"]
    config.calibration = {"target_kl": 0.01, "tol": 0.003, "n_prompts": 1, "n_tokens": 3, "max_evals": 6}
    if config.policy == "kl-ladder":
        config.targets = [0.005, 0.01]
    config.null = dataclasses.replace(config.null, n_vectors={m: 2 for m in config.null.methods})
    config.n_boot = 100
    out = tmp_path / name
    result = run_bench(config, out, model=model, tokenizer=tok, render=True)
    assert not result.failed, result.failed
    text = (out / "report.md").read_text()
    section = text.split(f"## {first['title']}")[1].split("\n## ")[0]
    header = section.strip().splitlines()[0 if not first.get("note") else 2]
    for column in first["columns"]:
        assert column["label"] in header
    body = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(body) == len(methods)
    assert all(cell.strip() for ln in body for cell in ln.strip("| ").split(" | ")[:2])


@pytest.mark.parametrize("name", ("quick", "full", *PUBLISHED))
def test_every_prompt_method_of_a_preset_extracts_for_its_behaviour(name, model, tok):
    """Prompt methods read their text from the behaviour file (prompt-engineered: its [engineered] table):
    a preset must not name one its behaviour cannot build (a full authority run failed on exactly that)."""
    from steerlab.methods import extract
    from steerlab.methods.registry import get_method

    config = load_preset(name)
    for method in [m for m in config.methods if get_method(m).family == "prompt"]:
        intervention = extract(model, tok, config.behavior, method, seed=0)
        assert not intervention.has_dose
