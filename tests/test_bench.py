"""steerlab bench: config loading and errors, the atomic unit store, plan keys, resumable runs on the tiny
model, and the kill-midway-and-resume test (a subprocess killed with SIGKILL, then resumed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from steerlab.bench import ConfigError, UnitStore, load_preset, parse_config, run_bench
from steerlab.bench.config import dump_toml, validate_names
from steerlab.bench.plan import build_plan
from steerlab.bench.runner import BenchError
from steerlab.bench.store import COMPLETE
from steerlab.report import render_report
from steerlab.testing import TINY_BENCH_TOML

TINY = TINY_BENCH_TOML


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(extra: str = "", base: str = TINY):
    return parse_config(base + extra, "tiny.toml")


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("name", ["quick", "full"])
def test_presets_load_and_name_registered_things(name):
    config = load_preset(name)
    validate_names(config)
    assert config.model == "smollm2-135m" and config.behavior == "honesty"
    if name == "quick":
        assert config.seeds == [0] and "ws-lora" in config.methods and "random" in config.null.methods
    else:
        assert len(config.seeds) == 3 and len(config.methods) >= 15


@pytest.mark.parametrize(
    ("text", "line", "message", "listed"),
    [
        (
            'methods = ["prompt-simple",\n  "mean_dif"]\nevals = ["off-task"]',
            2,
            "did you mean 'mean_diff'",
            "ws-lora",
        ),
        (
            'methods = ["mean_diff"]\nevals = ["off-task", "tiny_mfv"]',
            2,
            "did you mean 'tiny-mfv'",
            "ai-risk-ab",
        ),
        (
            'behavior = "honestly"\nmethods = ["mean_diff"]\nevals = ["off-task"]',
            1,
            "built-in behaviours are",
            "sycophancy",
        ),
    ],
)
def test_unknown_names_point_at_the_line_and_list_valid_names(text, line, message, listed):
    config = parse_config(text, "my.toml")
    with pytest.raises(ConfigError) as error:
        validate_names(config)
    assert (
        f"my.toml:{line}:" in str(error.value) and message in str(error.value) and listed in str(error.value)
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\nmodle = "x"',
            "my.toml:3: unknown key 'modle' (did you mean 'model'?)",
        ),
        ('methods = "mean_diff"\nevals = ["off-task"]', "my.toml:1: 'methods' must be a list"),
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\nseeds = [0, "1"]',
            "my.toml:3: 'seeds' must be a non-empty list of integers",
        ),
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\n[coefficients]\npolicy = "sweep"',
            "my.toml:4: coefficient policy 'sweep'",
        ),
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\n[coefficients]\npolicy = "fixed"\nvalues = [1, 2]',
            "must include 0",
        ),
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\n[method_options.pca]\nn_pairs = 3',
            "my.toml:3: [method_options.pca] is for 'pca'",
        ),
        (
            'methods = ["mean_diff"]\nevals = ["off-task"]\n[null]\nn_vector = 3',
            "my.toml:4: [null] has no key 'n_vector'",
        ),
        ('methods = ["mean_diff"]\nevals = ["off-task"\n', "my.toml: not valid TOML"),
    ],
)
def test_config_shape_errors(text, fragment):
    with pytest.raises(ConfigError, match=None) as error:
        parse_config(text, "my.toml")
    assert fragment in str(error.value)


def test_option_errors_name_the_table_and_valid_options():
    config = parse_config(
        'methods = ["mean_diff"]\nevals = ["off-task"]\n[method_options.mean_diff]\nn_pair = 3', "my.toml"
    )
    with pytest.raises(
        ConfigError,
        match=r"my.toml:4: \[method_options.mean_diff\] has no option .n_pair. \(did you mean .n_pairs.\?\); valid names",
    ):
        validate_names(config)
    config = parse_config(
        'methods = ["mean_diff"]\nevals = ["off-task"]\n[calibration]\ntarget = 3', "my.toml"
    )
    with pytest.raises(ConfigError, match=r"my.toml:4: \[calibration\] has no option .target."):
        validate_names(config)


def test_config_round_trips_through_its_toml_dump():
    config = load_preset("quick")
    again = parse_config(dump_toml(config.as_dict()), "dump")
    assert again.as_dict() == config.as_dict()


# ------------------------------------------------------------------------------------------ the store


def test_store_publishes_atomically_and_rejects_damage(tmp_path):
    store = UnitStore(tmp_path)
    with store.writing("eval", "u1", "k1", {"a": 1}) as tmp:
        (tmp / "rows.parquet").write_bytes(b"x" * 100)
        assert not store.path("eval", "u1").exists()  # invisible until sealed
    assert store.record("eval", "u1", "k1")["inputs"] == {"a": 1}
    assert store.record("eval", "u1", "other-key") is None  # wrong key: not trusted, removed
    with store.writing("eval", "u1", "k1", {}) as tmp:
        (tmp / "rows.parquet").write_bytes(b"x" * 100)
    (store.path("eval", "u1") / "rows.parquet").write_bytes(b"x" * 50)  # truncated after the fact
    assert store.record("eval", "u1", "k1") is None and not store.path("eval", "u1").exists()
    with store.writing("eval", "u1", "k1", {}) as tmp:
        (tmp / "rows.parquet").write_bytes(b"y" * 100)
    (store.path("eval", "u1") / "rows.parquet").write_bytes(b"x" * 100)  # same size, other bytes
    assert store.record("eval", "u1", "k1") is None


def test_store_crash_mid_write_leaves_nothing_trusted(tmp_path):
    store = UnitStore(tmp_path)
    with pytest.raises(OSError), store.writing("eval", "u2", "k2", {}) as tmp:
        (tmp / "part.parquet").write_bytes(b"half")
        raise OSError("No space left on device")
    assert not store.path("eval", "u2").exists()
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "eval").iterdir())
    # a directory without a completion record (as a kill between rename steps would leave) is not done
    stray = store.path("eval", "u3")
    stray.mkdir(parents=True)
    (stray / "rows.parquet").write_bytes(b"x")
    assert store.record("eval", "u3", "k3") is None and not stray.exists()
    (tmp_path / "eval" / ".tmp-u4.123").mkdir()
    assert [p.name for p in store.clean_partial()] == [".tmp-u4.123"]


# ------------------------------------------------------------------------------------------ plan keys


def test_plan_keys_change_only_downstream_of_a_changed_input():
    base = {u.label + u.kind: u.key for u in build_plan(tiny_config())}
    # prompt-simple and mean_diff: extract + calibrate + eval; random: extract + 2 vectors x (calibrate + eval)
    assert len(base) == 3 + 3 + 1 + 2 * 2
    assert len(set(base.values())) == len(base)
    assert {u.label + u.kind: u.key for u in build_plan(tiny_config())} == base  # stable
    changed = {
        u.label + u.kind: u.key
        for u in build_plan(tiny_config('[eval_options.sycophancy-claims]\nsplit = "all"\n'))
    }
    assert {k for k in base if base[k] != changed[k]} == {k for k in base if k.endswith("eval")}
    changed = {u.label + u.kind: u.key for u in build_plan(parse_config(TINY.replace("0.01", "0.02"), "t"))}
    assert {k for k in base if base[k] != changed[k]} == {k for k in base if not k.endswith("extract")}
    text = TINY.replace("[method_options.mean_diff]\nn_pairs = 4", "[method_options.mean_diff]\nn_pairs = 5")
    changed = {u.label + u.kind: u.key for u in build_plan(parse_config(text, "t"))}
    assert {k for k in base if base[k] != changed[k]} == {k for k in base if k.startswith("mean_diff")}


# ------------------------------------------------------------------------------------------ runs on the tiny model


def _results(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values(["method", "seed", "variant", "eval", "metric", "coeff"]).reset_index(drop=True)


def test_bench_runs_resumes_and_reruns_only_changed_units(model, tok, tmp_path):
    out = tmp_path / "out"
    first = run_bench(tiny_config(), out, model=model, tokenizer=tok, render=False)
    assert not first.failed and len(first.ran) == 11
    results = _results(out)
    assert set(results.columns) >= {
        "model",
        "behavior",
        "method",
        "family",
        "seed",
        "eval",
        "coeff",
        "calibrated_kl",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_rows",
    }
    assert set(results["method"]) == {"prompt-simple", "mean_diff", "random"}
    assert results.duplicated(["method", "seed", "variant", "eval", "metric", "coeff"]).sum() == 0
    rows = sorted(p.name for p in (out / "rows" / "sycophancy-claims").iterdir())
    assert rows == [
        "mean_diff-s0.parquet",
        "prompt-simple-s0.parquet",
        "random-s0-v0.parquet",
        "random-s0-v1.parquet",
    ]
    meta = json.loads(
        next((out / "units" / "calibrate").glob("mean_diff*/intervention/intervention.json")).read_text()
    )
    assert abs(meta["meta"]["calibration"]["achieved_kl"] - 0.01) <= 0.002
    log = (out / "bench.log").read_text()
    assert log.count("done ") == 11
    with pytest.raises(BenchError, match="--resume"):
        run_bench(tiny_config(), out, model=model, tokenizer=tok, render=False)
    again = run_bench(tiny_config(), out, resume=True, model=model, tokenizer=tok, render=False)
    assert again.ran == [] and len(again.reused) == 11
    pd.testing.assert_frame_equal(_results(out), results)
    changed = run_bench(
        tiny_config('[eval_options.sycophancy-claims]\nsplit = "train"\n'),
        out,
        resume=True,
        model=model,
        tokenizer=tok,
        render=False,
    )
    assert all("-sycophancy-claims-" in name for name in changed.ran)
    assert len(changed.ran) == 4 and len(changed.reused) == 7


def test_a_failing_unit_blocks_only_its_dependents(model, tok, tmp_path):
    config = tiny_config("[method_options.prompt-simple]\npersona_pair = 99\n")  # no such persona pair
    result = run_bench(config, tmp_path / "out", model=model, tokenizer=tok, render=False)
    failed = sorted(result.failed)
    assert len(failed) == 3 and all(name.startswith("prompt-simple") for name in failed)
    assert "blocked" in result.failed[next(n for n in failed if "-sycophancy-claims-" in n)]
    assert set(_results(tmp_path / "out")["method"]) == {"mean_diff", "random"}
    assert "FAIL" in (tmp_path / "out" / "bench.log").read_text()


RUNNER = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    from steerlab.bench import parse_config, run_bench
    from steerlab.testing import tiny_model, tiny_tokenizer
    tok = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tok))
    config = parse_config(open(sys.argv[2]).read(), "tiny.toml")
    run_bench(config, sys.argv[1], resume=len(sys.argv) > 3, model=model, tokenizer=tok, render=False)
    """
)


def _spawn(tmp_path: Path, out: Path, *extra: str) -> subprocess.Popen:
    script, config = tmp_path / "run.py", tmp_path / "tiny.toml"
    script.write_text(RUNNER)
    config.write_text(TINY)
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(config), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_kill_midway_then_resume_equals_an_uninterrupted_run(tmp_path, model, tok):
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    victim = _spawn(tmp_path, killed_out)
    log = killed_out / "bench.log"
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if log.is_file() and log.read_text().count("done ") >= 4:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    units_before = {p.parent.name for p in (killed_out / "units").glob("*/*/" + COMPLETE)}
    assert 4 <= len(units_before) < 11 and not (killed_out / "results.parquet").exists()
    resumed = _spawn(tmp_path, killed_out, "--resume")
    # the uninterrupted reference runs here meanwhile, on the same tiny model (same seed, one thread)
    run_bench(parse_config(TINY, "tiny.toml"), clean_out, model=model, tokenizer=tok, render=False)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    log_text = log.read_text()
    assert log_text.count("skip ") >= len(units_before)  # finished units were reused, not redone
    for kind_dir in (killed_out / "units").iterdir():
        assert not [p for p in kind_dir.iterdir() if p.name.startswith(".tmp-")]
    plan = json.loads((killed_out / "plan.json").read_text())["units"]
    on_disk = sorted(p.parent.name for p in (killed_out / "units").glob("*/*/" + COMPLETE))
    assert on_disk == sorted(u["name"] for u in plan)  # nothing lost, nothing duplicated
    pd.testing.assert_frame_equal(_results(killed_out), _results(clean_out))
    history = json.loads((killed_out / "run.json").read_text())["history"]
    assert [h["status"] for h in history] == ["killed", "finished"]
    report = render_report(killed_out).read_text()  # a killed invocation has no time of its own
    assert "2 invocations (--resume)" in report and "1 ended early, time not recorded" in report
    for name in os.listdir(clean_out / "rows" / "sycophancy-claims"):
        a = pd.read_parquet(killed_out / "rows" / "sycophancy-claims" / name)
        b = pd.read_parquet(clean_out / "rows" / "sycophancy-claims" / name)
        pd.testing.assert_frame_equal(a, b)


def test_cli_bench_rejects_a_bad_config_before_loading_a_model(tmp_path, capsys):
    from steerlab.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('methods = ["mean_diff", "ws-lorra"]\nevals = ["off-task"]\n')
    assert main(["bench", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: unknown method 'ws-lorra' (did you mean 'ws-lora'?)" in err


def test_option_value_errors_point_at_the_table():
    text = 'methods = ["mean_diff"]\nevals = ["off-task"]\n\n[calibration]\ntarget_kl = -1'
    with pytest.raises(ConfigError, match=r"my.toml:4: \[calibration\]: target_kl must be > 0"):
        validate_names(parse_config(text, "my.toml"))
