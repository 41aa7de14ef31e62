"""The ray executor against a real local Ray cluster (started once for this module on 127.0.0.1):
the same results as local value by value, a worker killed by PID mid-unit retried, the driver killed
and resumed with nothing lost or duplicated, and a deterministic failure reported once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'steerlab[ray]')")

from steerlab.bench import parse_config, run_bench  # noqa: E402
from steerlab.bench.store import COMPLETE  # noqa: E402
from steerlab.testing import TINY_BENCH_TOML, tiny_model, tiny_tokenizer, torch_threads  # noqa: E402

TINY = TINY_BENCH_TOML
N_UNITS = 11
RAY = 'executor = "ray"\n'  # a top-level key: before the first table


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tiny_model(vocab_size=len(tok)), tok


@pytest.fixture(scope="module")
def local_out(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("local") / "out"
    with torch_threads(1):
        result = run_bench(
            parse_config(TINY, "tiny.toml"), out, model=tiny[0], tokenizer=tiny[1], render=False
        )
    assert not result.failed
    return out


def _results(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values(["method", "seed", "variant", "eval", "metric", "coeff"]).reset_index(drop=True)


def _same_as_local(out: Path, local: Path) -> None:
    pd.testing.assert_frame_equal(_results(out), _results(local))
    names = sorted(os.listdir(local / "rows" / "sycophancy-claims"))
    assert sorted(os.listdir(out / "rows" / "sycophancy-claims")) == names
    for name in names:
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / "rows" / "sycophancy-claims" / name),
            pd.read_parquet(local / "rows" / "sycophancy-claims" / name),
        )


def _units_on_disk(out: Path) -> list[str]:
    return sorted(p.parent.name for p in (out / "units").glob("*/*/" + COMPLETE))


def test_ray_gives_the_local_results_value_by_value(cluster, tiny, local_out, tmp_path):
    out = tmp_path / "out"
    result = run_bench(
        parse_config(RAY + TINY, "tiny.toml"), out, model=tiny[0], tokenizer=tiny[1], render=False
    )
    assert not result.failed and len(result.ran) == N_UNITS
    _same_as_local(out, local_out)
    log = (out / "bench.log").read_text()
    assert log.count("done ") == N_UNITS and "executor ray" in log
    pids = {
        line.split(" pid ")[1].split()[0]
        for line in log.splitlines()
        if "ray worker" in line and "ready" in line
    }
    assert (
        1 <= len(pids) <= 2 and str(os.getpid()) not in pids
    )  # units ran in at most two model-holding actors
    again = run_bench(
        parse_config(TINY, "tiny.toml"), out, resume=True, model=tiny[0], tokenizer=tiny[1], render=False
    )
    assert again.ran == [] and len(again.reused) == N_UNITS  # the local executor reuses what ray wrote


def test_a_worker_killed_mid_unit_is_retried_and_the_run_completes(cluster, tiny, local_out, tmp_path):
    out = tmp_path / "out"
    done: dict[str, object] = {}

    def bench() -> None:
        config = parse_config(RAY + TINY, "tiny.toml")
        done["result"] = run_bench(config, out, model=tiny[0], tokenizer=tiny[1], render=False)

    thread = threading.Thread(target=bench)
    thread.start()
    log, victim = out / "bench.log", None
    deadline = time.time() + 600  # generous: a loaded machine starts Ray actors slowly
    while victim is None and time.time() < deadline and thread.is_alive():
        text = log.read_text() if log.is_file() else ""
        ready = [line for line in text.splitlines() if "ray worker" in line and "ready" in line]
        if ready and "start " in text:
            victim = int(ready[0].split(" pid ")[1].split()[0])
        time.sleep(0.02)
    assert victim is not None, "no worker became ready while the run was going"
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    result = done["result"]
    assert not result.failed, result.failed
    text = log.read_text()
    assert "retry " in text and f"pid {victim}) died" in text
    assert text.count("done ") == N_UNITS
    _same_as_local(out, local_out)


DRIVER = textwrap.dedent(
    """
    import sys
    from steerlab.bench import parse_config, run_bench
    from steerlab.testing import tiny_model, tiny_tokenizer
    tok = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tok))
    config = parse_config(open(sys.argv[2]).read(), "tiny.toml")
    config.executor_options = {"address": sys.argv[3]}  # what --ray-address HOST:PORT sets
    run_bench(config, sys.argv[1], model=model, tokenizer=tok, render=False)
    """
)


def test_driver_killed_then_resumed_loses_and_duplicates_nothing(cluster, tiny, local_out, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "tiny.toml").write_text(RAY + TINY)
    driver = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(out), str(tmp_path / "tiny.toml"), cluster],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # keep 127.0.0.1 as given: Ray otherwise swaps it for this host's network address, unreachable here
        env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    log = out / "bench.log"
    deadline = time.time() + 600  # generous: a loaded machine starts Ray actors slowly
    while time.time() < deadline and driver.poll() is None:
        if log.is_file() and log.read_text().count("done ") >= 3:
            break
        time.sleep(0.02)
    assert driver.poll() is None, driver.stderr.read().decode()[-2000:] if driver.stderr else ""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = _units_on_disk(out)
    assert 3 <= len(before) < N_UNITS, (
        log.read_text()
        if log.is_file()
        else driver.stderr.read().decode()[-3000:] and not (out / "results.parquet").exists()
    )
    resumed = run_bench(
        parse_config(RAY + TINY, "tiny.toml"),
        out,
        resume=True,
        model=tiny[0],
        tokenizer=tiny[1],
        render=False,
    )
    assert not resumed.failed and set(before) <= set(resumed.reused)
    assert len(resumed.ran) + len(resumed.reused) == N_UNITS
    plan = json.loads((out / "plan.json").read_text())["units"]
    assert _units_on_disk(out) == sorted(u["name"] for u in plan)  # nothing lost, nothing duplicated
    assert not [p for p in (out / "units").glob("*/.tmp-*")]
    _same_as_local(out, local_out)


def test_a_deterministic_failure_is_reported_once_and_independent_units_finish(cluster, tiny, tmp_path):
    config = parse_config(RAY + TINY + "[method_options.prompt-simple]\npersona_pair = 99\n", "tiny.toml")
    out = tmp_path / "out"
    result = run_bench(config, out, model=tiny[0], tokenizer=tiny[1], render=False)
    failed = sorted(result.failed)
    assert len(failed) == 3 and all(name.startswith("prompt-simple") for name in failed)
    extract = next(name for name in failed if "blocked" not in result.failed[name])
    assert "persona" in result.failed[extract].lower() or "99" in result.failed[extract]
    log = (out / "bench.log").read_text()
    assert log.count(f"FAIL  extract {extract}") == 1 and "retry " not in log
    assert len(result.ran) == N_UNITS - 3
    assert set(_results(out)["method"]) == {"mean_diff", "random"}


def test_a_kind_needing_the_whole_cluster_still_gets_placed(cluster, tiny, local_out, tmp_path):
    """calibrate asks for both CPUs: the idle extract actors must make room, then the evals get theirs back."""
    text = RAY + TINY.replace('methods = ["prompt-simple", "mean_diff", "random"]', 'methods = ["mean_diff"]')
    text = text.split("[method_options.random]")[0]
    text += "[executor_options.resources.calibrate]\nnum_cpus = 2\n"
    out = tmp_path / "out"
    result = run_bench(parse_config(text, "tiny.toml"), out, model=tiny[0], tokenizer=tiny[1], render=False)
    assert not result.failed and len(result.ran) == 3
    log = (out / "bench.log").read_text()
    assert "'num_cpus': 2.0" in log  # a worker of the calibrate profile ran
    local = _results(local_out)
    # The calibrate actor ran 2 threads, the local run 1: equal up to float summation order. At the tiny
    # config's target (0.01 nats, p95 of 8 token KLs) that order moves a KL by ~1e-4 of itself, the rollout's
    # log-probs and the base pass being different computations (steerlab.calibrate_arms), so c moves by ~2e-4
    # and the scores and CI bounds at c by a few 1e-5.
    pd.testing.assert_frame_equal(
        _results(out), local[local["method"] == "mean_diff"].reset_index(drop=True), rtol=1e-3, atol=1e-4
    )


TWO_BASELINES = (
    TINY.replace(
        'methods = ["prompt-simple", "mean_diff", "random"]\nevals = ["sycophancy-claims"]',
        'methods = ["prompt-simple", "mean_diff"]\nevals = ["sycophancy-claims", "ai-risk-ab"]',
    ).split("[null]")[0]
    + "[method_options.mean_diff]\nn_pairs = 4\n[eval_options.ai-risk-ab]\nn_per_file = 3\n"
)


def test_each_shared_baseline_is_computed_once_on_a_worker(cluster, tiny, tmp_path):
    """Two evals that share c = 0 rows, two arms each: two baseline computations in all (not one per
    worker or per arm), on Ray workers, written once into OUT/shared by the driver, same rows as local."""
    from steerlab.bench.baseline import BASELINE_KIND, SCORING_NOTE, SHARED_DIR, SHARED_ROWS_NOTE

    assert "ai-risk-ab" in TWO_BASELINES and "random" not in TWO_BASELINES
    with torch_threads(1):
        local = run_bench(
            parse_config(TWO_BASELINES, "t.toml"),
            tmp_path / "local",
            model=tiny[0],
            tokenizer=tiny[1],
            render=False,
        )
    result = run_bench(
        parse_config(RAY + TWO_BASELINES, "t.toml"),
        tmp_path / "ray",
        model=tiny[0],
        tokenizer=tiny[1],
        render=False,
    )
    assert not local.failed and not result.failed and sorted(result.ran) == sorted(local.ran)
    log = (tmp_path / "ray" / "bench.log").read_text()
    assert log.count(SCORING_NOTE) == 2 and log.count(SHARED_ROWS_NOTE) == 4  # 2 baselines, 4 readers
    workers = {line.split(" on pid ")[1].split()[0] for line in log.splitlines() if "computed base-" in line}
    assert workers and str(os.getpid()) not in workers  # computed on Ray workers, not in the driver
    shared = {
        run: {
            p.name: pd.read_parquet(p / "rows.parquet")
            for p in (tmp_path / run / SHARED_DIR / BASELINE_KIND).iterdir()
        }
        for run in ("local", "ray")
    }
    assert sorted(shared["ray"]) == sorted(shared["local"]) and len(shared["ray"]) == 2
    for name, rows in shared["local"].items():
        pd.testing.assert_frame_equal(shared["ray"][name], rows)
    pd.testing.assert_frame_equal(_results(tmp_path / "ray"), _results(tmp_path / "local"))
