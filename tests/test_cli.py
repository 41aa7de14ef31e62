"""The command line: --version, `models`, one-line errors and --debug tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from steerlab import __version__
from steerlab.cli import main, one_line
from steerlab.models import ACCEPTED_FORMS, ModelSpecError


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"steerlab {__version__}"


def test_models_lists_aliases_and_where_they_resolve(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    alias, description, resolves = lines[0].split("\t")
    assert alias == "smollm2-135m" and "SmolLM2-135M-Instruct" in description
    assert resolves == f"-> {tmp_path}/models/smollm2-135m-v1 (not yet converted)"
    assert "hub id" in lines[-1] and ".gguf" in lines[-1]


def test_models_resolves_given_specs(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert main(["models", "org/name", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "org/name\t-> hub: org/name",
        f"{tmp_path}\t-> local: {tmp_path}",
    ]


def test_unknown_model_spec_is_one_clear_line(capsys):
    assert main(["models", "no such model"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("steerlab: error: unknown model spec 'no such model'")
    assert ACCEPTED_FORMS in lines[0] and "--debug" in lines[0]


@pytest.mark.parametrize(
    "argv", [["--debug", "models", "no such model"], ["models", "no such model", "--debug"]]
)
def test_debug_raises_with_the_traceback(argv):
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        main(argv)


def test_one_line_collapses_messages():
    assert one_line(ValueError("first\n  second")) == "first second"
    assert one_line(KeyError("layer")) == "missing key 'layer'"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_entry_point_prints_the_traceback_with_debug():
    command = [sys.executable, "-m", "steerlab", "models", "no such model", "--debug"]
    debug = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelSpecError" in debug.stderr
