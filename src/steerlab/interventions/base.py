"""The intervention artifact: applied with a signed coefficient, saved as tensors + JSON, no pickle."""

from __future__ import annotations

import contextlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from steerlab.atomic import atomic_directory, dump_json, write_atomic

SCHEMA_VERSION = 1
TENSORS_FILE = "intervention.safetensors"
JSON_FILE = "intervention.json"
OWNED_FILES = (JSON_FILE, TENSORS_FILE)  # anchor first


def read_text(path: Path) -> str:
    """A UTF-8 text file, or an InterventionError naming it (bad bytes, unreadable)."""
    from steerlab.textfiles import FileReadError
    from steerlab.textfiles import read_text as read

    try:
        return read(path, "intervention file")
    except FileReadError as error:
        raise InterventionError(str(error)) from None


class InterventionError(ValueError):
    """An intervention that is malformed or does not fit the model it is applied to."""


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or inf values, naming the tensor.

    A finite sum proves every value finite (NaN and inf propagate), at a fraction of the cost of an
    elementwise check; only a non-finite sum (a bad value, or an overflow of large finite ones) is looked at
    value by value."""
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise InterventionError(f"{where}: tensor {name!r} has {bad} non-finite values (NaN or inf)")


def check_coefficient(coeff: float, kind: str) -> float:
    """A coefficient as a float; NaN or inf would silently poison every weight or activation it touches."""
    value = float(coeff)
    if not math.isfinite(value):
        raise InterventionError(f"{kind} coefficient must be finite, got {coeff!r}")
    return value


def library_version() -> str:
    from steerlab import __version__

    return __version__


class Intervention(ABC):
    """Something a method produces and a coefficient scales; ``c = 0`` is exactly the base model.

    Subclasses set ``kind`` and implement ``apply``, ``tensors``, ``params`` and ``from_parts``.
    ``meta`` carries provenance (method, family, model id, layers, hyperparameters, seed, data hash,
    calibrated coefficients) and is free-form JSON.
    """

    kind: ClassVar[str] = ""
    has_dose: ClassVar[bool] = True
    """False when the coefficient only picks a pole (prompting): nothing to calibrate, KL is measured."""
    per_row_coefficients: ClassVar[bool] = False
    """True when ``apply_rows`` can steer each row of a batch at its own coefficient (activation hooks)."""
    meta: dict[str, Any]

    # ---- behaviour
    @abstractmethod
    def apply(self, model: nn.Module, coeff: float) -> contextlib.AbstractContextManager[nn.Module]:
        """Context manager: the model is steered at `coeff` inside, and restored exactly on exit."""

    def apply_rows(
        self, model: nn.Module, coeffs: Sequence[float]
    ) -> contextlib.AbstractContextManager[nn.Module]:
        """Context manager: input row ``i`` of every batch is steered at ``coeffs[i]`` (batches declare their
        rows, see :mod:`steerlab.row_coefficients`). Only where ``per_row_coefficients`` is True."""
        raise InterventionError(
            f"{type(self).__name__} cannot steer the rows of a batch at different coefficients"
        )

    def rewrite(self, coeff: float, system: str | None, user: str) -> tuple[str | None, str]:
        """Rewrite a prompt's (system, user) for this coefficient; only prompt interventions change them."""
        return system, user

    def first_changed_layer(self, model: nn.Module) -> int | None:
        """The lowest decoder block whose output this intervention changes, at any coefficient, or None when
        it changes the input or anything outside the blocks. The blocks below it see the base model's
        hidden states, which evals reuse across coefficients (:mod:`steerlab.prefix_reuse`)."""
        return None

    def check_compatible(self, model: nn.Module) -> None:  # noqa: B027 (optional hook: no check by default)
        """Raise InterventionError if this intervention cannot act on `model` (shapes, layers)."""

    # ---- serialisation
    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor map that fully describes the intervention's numbers."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-able non-tensor settings needed to rebuild the intervention."""

    @classmethod
    @abstractmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> Intervention:
        """Rebuild from what `tensors`, `params` and `meta` returned."""

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write intervention.safetensors + intervention.json atomically (tmp dir, then rename).

        A directory holding files steerlab did not write is refused unless `overwrite` (which then
        replaces only the intervention's own files)."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in self.tensors().items()}
        check_finite(tensors, f"saving {self.kind} intervention to {target}")
        document = {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "library_version": library_version(),
            "params": self.params(),
            "meta": self.meta,
        }
        with atomic_directory(target, OWNED_FILES, overwrite=overwrite) as tmp:
            save_file(tensors, str(tmp / TENSORS_FILE))
            (tmp / JSON_FILE).write_text(dump_json(document, indent=2), encoding="utf-8")
            self.write_extras(tmp)
        return target

    def write_extras(self, directory: Path) -> None:  # noqa: B027 (optional hook: nothing by default)
        """Hook: write extra files into the (temporary) intervention directory inside the atomic save."""

    def read_extras(self, directory: Path) -> None:  # noqa: B027 (optional hook: nothing by default)
        """Hook: read back what `write_extras` wrote (called by `load_intervention`)."""

    def update_meta(self, directory: str | Path, **updates: Any) -> None:
        """Merge `updates` into meta here and in the saved intervention.json (atomic replace)."""
        self.meta.update(updates)
        path = Path(directory) / JSON_FILE
        document = json.loads(read_text(path))
        document["meta"].update(updates)
        write_atomic(path, dump_json(document, indent=2))

    def __repr__(self) -> str:
        method = self.meta.get("method", "?")
        return f"{type(self).__name__}(method={method!r}, {self.summary()})"

    def summary(self) -> str:
        return ""


_KINDS: dict[str, type[Intervention]] = {}


def register_kind(cls: type[Intervention]) -> type[Intervention]:
    """Class decorator: make an intervention kind loadable by name."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__} must set a non-empty `kind`")
    _KINDS[cls.kind] = cls
    return cls


def load_intervention(directory: str | Path, model: nn.Module | None = None) -> Intervention:
    """Load an intervention directory; check finiteness, and shapes against `model` when given."""
    path = Path(directory)
    json_path, tensor_path = path / JSON_FILE, path / TENSORS_FILE
    if not json_path.is_file() or not tensor_path.is_file():
        raise InterventionError(
            f"{path} is not an intervention directory (expected {JSON_FILE} and {TENSORS_FILE})"
        )
    try:
        document = json.loads(read_text(json_path))
    except json.JSONDecodeError as error:
        raise InterventionError(f"{json_path}: invalid JSON ({error})") from error
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InterventionError(
            f"{json_path}: schema_version {version!r}, this steerlab reads {SCHEMA_VERSION}"
        )
    kind = document.get("kind")
    if kind not in _KINDS:
        raise InterventionError(f"{json_path}: unknown intervention kind {kind!r}; known: {sorted(_KINDS)}")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as error:  # safetensors raises its own error type for a truncated or foreign file
        raise InterventionError(f"{tensor_path}: not a readable safetensors file ({error})") from error
    check_finite(tensors, str(tensor_path))
    try:
        intervention = _KINDS[kind].from_parts(tensors, document.get("params", {}), document.get("meta", {}))
    except InterventionError:
        raise
    except (KeyError, ValueError, TypeError) as error:
        raise InterventionError(
            f"{path}: tensors and {JSON_FILE} do not describe a valid {kind} ({error})"
        ) from error
    intervention.read_extras(path)
    if model is not None:
        check_recorded_model(intervention.meta, model, str(path))
        intervention.check_compatible(model)
    return intervention


def check_recorded_model(meta: dict[str, Any], model: nn.Module, where: str) -> None:
    """If `meta` records the model it was made for (``meta['model']``), its layer count and hidden size must match."""
    from steerlab.models import hidden_size, num_layers

    recorded = meta.get("model")
    if not isinstance(recorded, dict):
        return
    actual = {"n_layers": num_layers(model), "hidden_size": hidden_size(model)}
    for key, value in actual.items():
        expected = recorded.get(key)
        if isinstance(expected, int) and expected != value:
            made_for = recorded.get("model_id") or recorded.get("spec") or "another model"
            raise InterventionError(
                f"{where}: made for {made_for} with {key}={expected}, but the target model has {key}={value}"
            )


@contextlib.contextmanager
def applied(model: nn.Module, *pairs: tuple[Intervention, float]) -> Iterator[nn.Module]:
    """Apply several interventions at once (effects compose: activation additions sum)."""
    with contextlib.ExitStack() as stack:
        for intervention, coeff in pairs:
            stack.enter_context(intervention.apply(model, coeff))
        yield model
