"""A bench never loses or misreports work: one writer per output directory (an OS lock; a second process is
refused at once and changes nothing; a SIGKILLed holder's lock is taken over and its run is recorded as
killed), and every input file is hashed by content (an edited data file or model directory reruns exactly
the affected units; the same config run from two working directories records which data it used)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from steerlab.bench import parse_config, run_bench
from steerlab.bench.lock import LOCK_FILE, OutputInUseError
from steerlab.bench.plan import build_plan
from steerlab.paths import package_data
from steerlab.testing import tiny_bench_toml, tiny_model

SRC = Path(__file__).resolve().parents[1] / "src"

CONFIG = tiny_bench_toml(
    methods=("prompt-simple", "mean_diff"),
    model="{model}",
    extra='[eval_options.sycophancy-claims]\nsource = "{claims}"\nsplit = "all"\n',
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def model_dir(tmp_path, tok) -> Path:
    directory = tmp_path / "tiny-model"
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture()
def claims(tmp_path) -> Path:
    path = tmp_path / "myclaims.jsonl"
    lines = package_data("sycophancy_claims.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    return path


def _config(model: str | Path, claims: Path):
    return parse_config(CONFIG.format(model=model, claims=claims), "safety.toml")


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*")}


def _spawn_cli(tmp_path: Path, config_text: str, out: Path, *extra: str) -> subprocess.Popen:
    path = tmp_path / "cli.toml"
    path.write_text(config_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "steerlab", "bench", str(path), "-o", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _wait_running(process: subprocess.Popen, out: Path) -> None:
    """Until the process holds the lock and has recorded its run as running in run.json."""
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        try:
            history = json.loads((out / "run.json").read_text())["history"]
            if history and history[-1].get("status") == "running" and history[-1]["pid"] == process.pid:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"bench did not start: {process.stderr.read().decode()[-2000:]}")


def test_an_edited_data_file_reruns_exactly_the_affected_units(model, tok, tmp_path, claims):
    out = tmp_path / "out"
    first = run_bench(_config("tiny", claims), out, model=model, tokenizer=tok, render=False)
    assert not first.failed and len(first.ran) == 6
    lines = claims.read_text(encoding="utf-8").splitlines()[:5]
    lines[0] = lines[0].replace("claim", "claim", 1)
    claims.write_text("\n".join(lines) + "\n", encoding="utf-8")  # cut to 5 rows
    again = run_bench(_config("tiny", claims), out, resume=True, model=model, tokenizer=tok, render=False)
    assert sorted(n.split("-")[0] for n in again.ran) == ["mean_diff", "prompt"]  # the two eval units
    assert all("sycophancy-claims" in name for name in again.ran) and len(again.reused) == 4
    results = pd.read_parquet(out / "results.parquet")
    rows = pd.read_parquet(next((out / "rows" / "sycophancy-claims").iterdir()))
    assert rows["row_id"].nunique() == 5 and not results.empty
    data = json.loads((out / "run.json").read_text())["data"]["evals"]["sycophancy-claims"]
    assert data["files"][0]["path"] == str(claims.resolve()) and data["files"][0]["rows"] == 5


def test_a_changed_local_model_directory_changes_every_unit_key(tmp_path, tok, model_dir, claims):
    keys = {u.name: u.key for u in build_plan(_config(model_dir, claims))}
    assert {u.name: u.key for u in build_plan(_config(model_dir, claims))} == keys  # stable
    time.sleep(0.01)
    tiny_model("llama", seed=1, vocab_size=len(tok)).save_pretrained(model_dir)  # overwritten weights
    changed = {u.label + u.kind: u.key for u in build_plan(_config(model_dir, claims))}
    assert not set(changed.values()) & set(keys.values())


def test_a_second_bench_on_the_same_directory_is_refused_at_once(tmp_path, model_dir, claims, model, tok):
    out = tmp_path / "out"
    text = CONFIG.format(model=model_dir, claims=claims)
    holder = _spawn_cli(tmp_path, text, out)
    try:
        _wait_running(holder, out)
        holder.send_signal(signal.SIGSTOP)  # hold it mid-run, lock held
        before = _snapshot(out)
        started = time.time()
        with pytest.raises(OutputInUseError, match=rf"in use by pid {holder.pid} \(started "):
            run_bench(_config(model_dir, claims), out, resume=True, model=model, tokenizer=tok, render=False)
        assert time.time() - started < 10 and _snapshot(out) == before  # refused at once, nothing changed
    finally:
        holder.send_signal(signal.SIGCONT)
    _, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err.decode()[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == {} and [h["status"] for h in run["history"]] == ["finished"]


def test_a_killed_holders_lock_is_taken_over_and_its_run_recorded(tmp_path, model_dir, claims):
    out = tmp_path / "out"
    victim = _spawn_cli(tmp_path, CONFIG.format(model=model_dir, claims=claims), out)
    _wait_running(victim, out)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == victim.pid  # its lock record is left behind
    result = run_bench(_config(model_dir, claims), out, resume=True, render=False)
    assert not result.failed
    history = json.loads((out / "run.json").read_text())["history"]
    assert [h["status"] for h in history] == ["killed", "finished"] and history[0]["pid"] == victim.pid


LOCKER = """
import sys, time
from pathlib import Path
from steerlab.bench.lock import OutputInUseError, hold_output_lock
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    with hold_output_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(3)
except OutputInUseError as error:
    print("refused", error, flush=True)
"""


@pytest.mark.parametrize("gap", [0.0, 1.0])
def test_two_processes_started_together_or_a_second_apart_get_one_lock(tmp_path, gap):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    start = time.time() + 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(tmp_path / "out"), str(start + i * gap)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(2)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].split()[0] for p in procs)
    assert outputs == ["locked", "refused"]


def test_cleanup_never_touches_a_live_writers_unit(tmp_path):
    from steerlab.bench.store import UnitStore

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / "eval" / f".tmp-unit.{sleeper.pid}"
        live.mkdir(parents=True)
        dead = tmp_path / "eval" / ".tmp-unit.999999999"
        dead.mkdir()
        assert UnitStore(tmp_path).clean_partial() == [dead] and live.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()


WHERE = """
import json, sys
from steerlab.bench import parse_config, run_bench
config = parse_config(open(sys.argv[1]).read(), "cwd.toml")
result = run_bench(config, sys.argv[2])
assert not result.failed, result.failed
"""


def test_the_same_config_from_two_working_directories_records_its_data(tmp_path, model_dir, tok):
    """One working directory has a shared/data folder above it, one has none: identical results, or the
    difference is recorded in run.json and the report."""
    with_data, without = tmp_path / "a" / "work", tmp_path / "b" / "work"
    without.mkdir(parents=True)
    shared = tmp_path / "a" / "shared" / "data" / "anthropic_evals_advanced_ai_risk" / "human_generated_evals"
    shared.mkdir(parents=True)
    fixture = package_data("ai_risk_fixture.jsonl").read_text(encoding="utf-8").splitlines()
    for name in ("survival-instinct", "corrigible-neutral-HHH"):
        (shared / f"{name}.jsonl").write_text("\n".join(fixture[:6]) + "\n")
    with_data.mkdir(parents=True)
    config = tmp_path / "cwd.toml"
    config.write_text(
        f'model = "{model_dir}"\nbehavior = "{package_data("behaviors/honesty.toml")}"\n'
        'methods = ["prompt-simple"]\nevals = ["ai-risk-ab"]\nn_boot = 200\n'
        '[coefficients]\npolicy = "fixed"\nvalues = [-1.0, 0.0, 1.0]\n'
        "[calibration]\nn_prompts = 2\nn_tokens = 4\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "STEERLAB_SHARED_DATA"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(SRC))
    outs = []
    for cwd in (with_data, without):
        out = tmp_path / f"out-{cwd.parent.name}"
        done = subprocess.run(
            [sys.executable, "-c", WHERE, str(config), str(out)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(out)
    runs = [json.loads((o / "run.json").read_text())["data"] for o in outs]
    reports = [(o / "report.md").read_text() for o in outs]
    results = [pd.read_parquet(o / "results.parquet") for o in outs]
    if runs[0] == runs[1]:  # both found the same folder (e.g. one beside the checkout): identical results
        pd.testing.assert_frame_equal(results[0], results[1])
        return
    assert runs[0]["shared_data_dir"] == str((tmp_path / "a" / "shared" / "data").resolve())
    mfv = [r["evals"]["ai-risk-ab"] for r in runs]
    assert mfv[0]["sha256"] != mfv[1]["sha256"]
    assert "ai-risk-ab: shared data, 2 files, 12 rows" in reports[0]
    assert "ai-risk-ab: built-in fixture, 1 file, 20 rows" in reports[1]
    assert mfv[1]["summary"] in reports[1] and mfv[0]["summary"] not in reports[1]
    plans = [json.loads((o / "plan.json").read_text())["units"] for o in outs]
    assert {u["key"] for u in plans[0] if u["kind"] == "eval"} != {
        u["key"] for u in plans[1] if u["kind"] == "eval"
    }
    shutil.rmtree(tmp_path / "a")


def test_data_edited_mid_run_is_never_stored_under_the_planned_key(tmp_path, claims):
    from steerlab.bench.plan import check_data_unchanged
    from steerlab.evals import get_eval, make_eval_config
    from steerlab.provenance import eval_data

    unit = next(u for u in build_plan(_config("tiny", claims)) if u.kind == "eval")
    options = {"source": str(claims), "split": "all"}
    check_data_unchanged(unit, eval_data(unit.eval, make_eval_config(get_eval(unit.eval), options)))
    claims.write_text(claims.read_text(encoding="utf-8").replace("a", "b", 1), encoding="utf-8")
    edited = eval_data(unit.eval, make_eval_config(get_eval(unit.eval), options))
    with pytest.raises(RuntimeError, match="changed during the run"):
        check_data_unchanged(unit, edited)


def test_a_sweep_on_a_directory_in_use_is_refused(tmp_path, capsys):
    """`steerlab sweep` writes a resumable OUT too: the same lock guards it, before anything loads."""
    from steerlab.cli import main

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(out), str(time.time())], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout.readline().startswith("locked")
        argv = ["sweep", "-b", "honesty", "--method", "mean_diff", "-e", "sycophancy-claims", "-o", str(out)]
        assert main(argv) == 1
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.wait(timeout=60)
    # a sweep that fails validation leaves no directory behind
    assert main([*argv[:-1], str(tmp_path / "new"), "--set", "no_such_option=1"]) == 1
    assert not (tmp_path / "new").exists()


def test_project_never_replaces_a_user_folder(tmp_path, capsys):
    from steerlab.cli import main
    from steerlab.interventions import ActivationAddition

    folder = ActivationAddition({1: torch.ones(8)}, meta={}).save(tmp_path / "iv")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.txt").write_text("x")
    assert main(["project", "-i", str(folder), "--prompts", str(prompts), "-o", str(user)]) == 1
    assert "holds files steerlab did not write" in capsys.readouterr().err
    assert [p.name for p in user.iterdir()] == ["thesis.txt"]
