"""The report: results assembled from unit files (row identity checked), the headline table, plots, and
the CLI; all on synthetic saved results, with no model."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steerlab.bench.config import dump_toml, load_preset
from steerlab.bench.results import assemble
from steerlab.metrics import RowMismatchError, foundation_delta_logit, summarise
from steerlab.report import ReportError, headline_table, load_results, render_report

SRC = Path(__file__).resolve().parents[1] / "src" / "steerlab"
ARMS = [  # method, family, seed, variant, shift of y at +c, calibrated c
    ("prompt-simple", "prompt", 0, None, 0.4, 1.0),
    ("mean_diff", "activation", 0, None, 1.5, 6.0),
    ("mean_diff", "activation", 1, None, 1.1, 5.0),
    ("random", "unsupervised", 0, 0, 0.05, 9.0),
    ("random", "unsupervised", 0, 1, -0.1, 8.5),
]
FOUNDATIONS = ["Care", "Fairness", "Sanctity"]


def _rows(eval_name: str, shift: float, c: float, seed: int, n: int = 40, drop: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + int(abs(shift) * 100))
    base = np.random.default_rng(7).normal(0, 1, n)
    frames = []
    for coeff, delta in ((-c, -shift), (0.0, 0.0), (c, shift)):
        y = base + delta + rng.normal(0, 0.3, n) * (coeff != 0)
        frame = pd.DataFrame(
            {
                "eval": eval_name,
                "row_id": [f"r{i}" for i in range(n)],
                "label": 1,
                "coeff": coeff,
                "logratio": y,
                "pmass": np.clip(0.9 - 0.05 * abs(delta) + rng.normal(0, 0.01, n), 0, 1),
                "y": y,
                "foundation": [FOUNDATIONS[i % 3] for i in range(n)],
                "vignette_id": [f"v{i}" for i in range(n)],
                "condition": "other_violate",
                "wrongness": 1 / (1 + np.exp(-y)),
            }
        )
        frames.append(frame.iloc[drop:])
    return pd.concat(frames, ignore_index=True)


def _arm(method: str, seed: int, variant: int | None) -> str:
    return "-".join([method, f"s{seed}"] + ([f"v{variant}"] if variant is not None else []))


def make_bench_output(out: Path, mismatch: bool = False) -> dict:
    """Unit files as `steerlab bench` writes them, then `assemble` (the code path of a real run)."""
    config = load_preset("quick").as_dict() | {"evals": ["sycophancy-claims", "ai-risk-ab", "tiny-mfv"]}
    config |= {"methods": ["prompt-simple", "mean_diff", "random"], "seeds": [0, 1], "n_boot": 200}
    units, status = [], {}
    for index, (method, family, seed, variant, shift, c) in enumerate(ARMS):
        ident = {"method": method, "family": family, "seed": seed, "variant": variant}
        name = f"{_arm(method, seed, variant)}-cal"
        units.append({**ident, "kind": "calibrate", "name": name, "eval": None})
        folder = out / "units" / "calibrate" / name
        folder.mkdir(parents=True)
        trace = [
            {"coeff": c, "kl": 1.0 + index / 100, "kl_pos": 0.98, "kl_neg": 1.0 + index / 100, "mean_kl": 0.2}
        ]
        policy = "measured" if family == "prompt" else "iso-kl"
        document = {
            "policy": policy,
            "coeff": c,
            "achieved_kl": trace[0]["kl"],
            "target_kl": 1.0,
            "converged": True,
            "n_evals": 4,
            "trace": trace,
            "seconds": 3.0,
            "note": "",
        }
        (folder / "calibration.json").write_text(json.dumps(document))
        status[name] = "done"
        for eval_name in config["evals"]:
            name = f"{_arm(method, seed, variant)}-{eval_name}"
            units.append({**ident, "kind": "eval", "name": name, "eval": eval_name})
            folder = out / "units" / "eval" / name
            folder.mkdir(parents=True)
            table = _rows(eval_name, shift, c, seed, drop=1 if mismatch and index == 2 else 0)
            table.to_parquet(folder / "rows.parquet", index=False)
            metrics = summarise(table, c, n_boot=200)
            if eval_name == "ai-risk-ab":
                for coeff in (-c, 0.0, c):
                    sel = table[table["coeff"] == coeff]
                    value = float((sel["logratio"] > 0).mean() * 100)
                    metrics.append(
                        {
                            "metric": "pct_matching",
                            "coeff": coeff,
                            "value": value,
                            "ci_low": value - 5,
                            "ci_high": value + 5,
                            "n_rows": len(sel),
                        }
                    )
            summary = {"metrics": metrics}
            if eval_name == "tiny-mfv":
                summary["foundations"] = foundation_delta_logit(table, n_boot=200).to_dict("records")
            (folder / "summary.json").write_text(json.dumps(summary))
            status[name] = "done"
    (out / "config.toml").write_text(dump_toml(config))
    run = {
        "command": "steerlab bench -o out",
        "started": "2026-01-02 03:04:05",
        "seconds": 600.0,
        "units": 20,
        "ran": 20,
        "reused": 0,
        "failed": {"mean_diff-s2-x": "RuntimeError: boom"},
    }
    (out / "run.json").write_text(json.dumps(run))
    assemble(out, config, units, status)
    return config


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    make_bench_output(out)
    render_report(out)
    return out


def test_assemble_writes_the_tidy_results_table(bench_out):
    results = pd.read_parquet(bench_out / "results.parquet")
    assert list(results.columns[:15]) == [
        "model",
        "behavior",
        "method",
        "family",
        "seed",
        "variant",
        "eval",
        "coeff",
        "calibrated_c",
        "calibrated_kl",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_rows",
    ]
    assert results.duplicated(["method", "seed", "variant", "eval", "metric", "coeff"]).sum() == 0
    md = results[(results["method"] == "mean_diff") & (results["seed"] == 1)]
    assert set(md["calibrated_c"]) == {5.0} and (md["n_rows"] == 40).all()
    assert sorted(p.name for p in (bench_out / "rows" / "tiny-mfv").iterdir()) == sorted(
        f"{_arm(m, s, v)}.parquet" for m, _, s, v, *_ in ARMS
    )


def test_assemble_refuses_arms_scored_on_different_rows(tmp_path):
    with pytest.raises(RowMismatchError, match="1 only in"):
        make_bench_output(tmp_path, mismatch=True)


def test_headline_values_come_from_the_results(bench_out):
    loaded = load_results(bench_out)
    table = headline_table(loaded, "sycophancy-claims").set_index("method")
    results = loaded.results
    plus = results[
        (results["eval"] == "sycophancy-claims") & (results["metric"] == "si_k2") & (results["coeff"] > 0)
    ]
    prompt = plus[plus["method"] == "prompt-simple"].iloc[0]
    assert table.loc["prompt-simple", "si_k2"] == prompt["value"]
    assert table.loc["prompt-simple", "si_k2_low"] == prompt["ci_low"]
    seeds = plus[plus["method"] == "mean_diff"]
    assert table.loc["mean_diff", "si_k2"] == pytest.approx(seeds["value"].mean())
    assert table.loc["mean_diff", "si_k2_low"] == seeds["ci_low"].min()  # envelope of the per-seed CIs
    band = plus[plus["method"] == "random"]
    assert table.loc["random", "si_k2"] == pytest.approx(band["value"].mean())
    assert (table.loc["random", "si_k2_low"], table.loc["random", "si_k2_high"]) == (
        band["value"].min(),
        band["value"].max(),
    )
    assert (
        table.loc["mean_diff", "si_k2"] > table.loc["random", "si_k2"]
    )  # the synthetic steer beats the null
    assert (
        table.loc["mean_diff", "calibrated_c"] == 5.5
        and table.loc["mean_diff", "label"] == "mean_diff (2 seeds)"
    )


def test_report_markdown_has_every_section_and_links_existing_pngs(bench_out):
    text = (bench_out / "report.md").read_text()
    for fragment in (
        "## Headline: sycophancy-claims",
        "| method | family | SI k=2 | SI k=1 | fix rate | broke rate",
        "random (band of 2)",
        "mean_diff (2 seeds)",
        "## Calibration",
        "## ai-risk-ab",
        "% matching behaviour (+c)",
        "## tiny-mfv",
        "Per-foundation delta logit",
        "## Units that failed",
        "RuntimeError: boom",
        "## How to reproduce",
        "steerlab bench -o out",
        'behavior = "honesty"',
    ):
        assert fragment in text, fragment
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert {Path(link).name for link in links} >= {
        "si_bars.png",
        "score_sycophancy-claims.png",
        "violins_ai-risk-ab.png",
        "tiny_mfv_heatmap.png",
    }
    for link in links:
        data = (bench_out / link).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_cli_and_a_directory_without_results(bench_out, tmp_path, capsys):
    from steerlab.cli import main

    (bench_out / "report.md").unlink()
    assert main(["report", str(bench_out)]) == 0
    assert (bench_out / "report.md").is_file() and capsys.readouterr().out.strip().endswith("report.md")
    with pytest.raises(ReportError, match="no results.parquet"):
        render_report(tmp_path)


TORCH_FREE = [
    "report.py",
    "report_plots.py",
    "report_spec.py",
    "report_views.py",
    "reexport.py",
    "registry.py",
    "eval_results.py",
    "si.py",
    "moral_foundations.py",
    "metrics.py",
    "bench/__init__.py",
    "bench/config.py",
    "bench/store.py",
    "bench/results.py",
    "bench/progress.py",
]


@pytest.mark.parametrize("name", TORCH_FREE)
def test_report_side_never_imports_torch_at_module_level(name):
    tree = ast.parse((SRC / name).read_text())
    top_level = [
        n
        for stmt in tree.body
        for n in ast.walk(stmt)
        if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
    ]
    for node in top_level:
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            assert module.split(".")[0] != "torch", f"{name} imports {module}"
            if module.startswith("steerlab."):
                top = module.split(".")[1]
                assert top in {
                    "bench",
                    "metrics",
                    "report_plots",
                    "report_tables",
                    "report_spec",
                    "report_views",
                    "registry",
                    "atomic",
                    "eval_results",
                    "si",
                    "moral_foundations",
                    "paths",
                    "reexport",
                }, f"{name} imports {module}"
