"""Every steerlab module can be the first one a user imports (no circular-import errors)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import steerlab


def test_every_module_imports_first():
    names = sorted(m.name for m in pkgutil.walk_packages(steerlab.__path__, "steerlab."))
    names.remove("steerlab.__main__")  # runs the CLI
    assert "steerlab.generation" in names and len(names) > 100
    # one interpreter: drop every steerlab module before each import (torch and transformers stay loaded)
    script = textwrap.dedent(
        f"""
        import importlib, sys
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == "steerlab" or m.startswith("steerlab.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as error:
                failed.append(f"{{name}}: {{type(error).__name__}}: {{error}}")
        print("\\n".join(failed))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", "modules that fail when imported first:\n" + result.stdout


def test_scoring_reexports_resolve_and_unknown_names_raise():
    scoring = importlib.import_module("steerlab.scoring")
    assert scoring.generate is importlib.import_module("steerlab.generation").generate
    assert scoring.token_kl is importlib.import_module("steerlab.token_kl").token_kl
    try:
        scoring.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:  # pragma: no cover
        raise AssertionError("an unknown attribute did not raise")
