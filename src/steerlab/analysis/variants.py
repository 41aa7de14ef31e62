"""The ablation variants of one adapter's dW: each a `WeightDelta` built only from the trained delta.

Families of variants (``--variants``): ``cross`` (shared cross-adapter SVD basis, own SVD top-K and
tails, random null bases), ``layer`` (layer thirds, single layers, leave-one-out, module groups), ``param``
(own-SVD S-space crops and energy groups, the base weight's SVD lens), ``native`` (family-native splits
from the saved adapter parameters, see `steerlab.analysis.native`). ``full`` and
``zero`` are always included; every ``keep`` row gets a norm-matched random control (``<name>~rand``).
Keep and drop rows of one split share ``group``; per tensor, keep + drop == dW is checked.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from steerlab.analysis import bases, memo
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.layer_variants import MODULE_GROUPS, layer_variants
from steerlab.interventions import WeightDelta
from steerlab.interventions.weight import Delta

__all__ = [
    "ALL_FAMILIES",
    "MODULE_GROUPS",
    "TensorInfo",
    "Variant",
    "VariantOptions",
    "build_variants",
    "for_each_variant",
    "subset",
    "tensor_info",
]

ALL_FAMILIES = ("cross", "layer", "param", "native")
WRITE_ROLES = {"o", "down"}


@dataclass(frozen=True)
class TensorInfo:
    layer: int
    role: str

    @property
    def side(self) -> str:
        """Where the residual stream is: the output (left) of o/down, the input (right) of the rest."""
        return "left" if self.role in WRITE_ROLES else "right"


@dataclass
class VariantOptions:
    """Which variants and how many: K values, random draws, controls, the base-lens K."""

    shared_k: tuple[int, ...] = (8, 32, 64)
    own_k: tuple[int, ...] = (8, 32)
    random_draws: int = 3
    base_k: int = 32
    norm_controls: bool = True
    strict_k: bool = False  # True when the user named K: a K beyond a tensor's rank is then an error
    seed: int = 0


@dataclass
class Variant:
    """One keep/drop variant of one adapter's dW (a row group of the ablations table)."""

    name: str
    ablation: str
    basis: str
    group: str
    keep: str  # keep | drop | full | zero | control
    delta: WeightDelta
    layers: str = ""
    modules: str = ""
    energy_fraction: float = 1.0
    expected_retention: float = float("nan")
    n_tensors: int = 0
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def norm_fraction(self) -> float:
        return math.sqrt(max(self.energy_fraction, 0.0))


def tensor_info(model: nn.Module, names: Sequence[str]) -> dict[str, TensorInfo]:
    """Layer index and module role of each parameter name (role 'other' for a name outside the blocks)."""
    from steerlab.models import decoder_layer_prefix, linear_modules, num_layers

    prefix = decoder_layer_prefix(model)
    known: dict[str, TensorInfo] = {}
    for layer in range(num_layers(model)):
        for role, path in linear_modules(model, layer).items():
            known[f"{prefix}.{layer}.{path}.weight"] = TensorInfo(layer, role)
    return {name: known.get(name, TensorInfo(-1, "other")) for name in names}


def subset(delta: WeightDelta, names: Sequence[str], tag: str) -> WeightDelta:
    return WeightDelta({n: delta.deltas[n] for n in names}, meta={**delta.meta, "ablation": tag})


def _energy(deltas: dict[str, Delta]) -> float:
    return sum(bases.energy(d) for d in deltas.values())


class VariantBuilder:
    """Hands each variant of one adapter to `consume` as soon as it is built (and its norm-matched random
    control right after it), so only one split's tensors are alive at a time."""

    def __init__(
        self,
        adapter: Adapter,
        info: dict[str, TensorInfo],
        consume: Callable[[Variant], None],
        options: VariantOptions,
    ) -> None:
        self.adapter = adapter
        self.full = adapter.delta
        self.info = info
        self.total = _energy(self.full.deltas) or 1.0
        self.consume = consume
        self.options = options

    def emit(self, variant: Variant) -> None:
        self.consume(variant)
        if (
            not self.options.norm_controls
            or variant.keep not in ("keep", "full")
            or variant.basis == "random"
        ):
            return
        seed = self.options.seed * 1_000_003 + zlib.crc32(variant.name.encode())
        generator = torch.Generator().manual_seed(seed)
        deltas = {
            n: bases.random_like(d, math.sqrt(bases.energy(d)), generator)
            for n, d in variant.delta.deltas.items()
        }
        name = f"{variant.name}~rand"
        self.consume(self.make(name, "control", variant.basis or "full", variant.group, "control", deltas))

    def add(
        self,
        name: str,
        ablation: str,
        basis: str,
        group: str,
        keep: str,
        deltas: dict[str, Delta],
        expected: float = float("nan"),
    ) -> None:
        self.emit(self.make(name, ablation, basis, group, keep, deltas, expected))

    def make(
        self,
        name: str,
        ablation: str,
        basis: str,
        group: str,
        keep: str,
        deltas: dict[str, Delta],
        expected: float = float("nan"),
    ) -> Variant:
        names = [n for n in deltas if n in self.info]
        layers = sorted({self.info[n].layer for n in names})
        roles = sorted({self.info[n].role for n in names})
        meta = {**self.full.meta, "ablation": name}
        meta.pop("calibration", None)  # a variant is not the calibrated intervention
        return Variant(
            name,
            ablation,
            basis,
            group,
            keep,
            WeightDelta(deltas, meta=meta),
            layers=",".join(str(x) for x in layers),
            modules=",".join(roles),
            energy_fraction=_energy(deltas) / self.total,
            expected_retention=expected,
            n_tensors=len(deltas),
        )

    def pair(
        self,
        stem: str,
        ablation: str,
        basis: str,
        group: str,
        keep: dict[str, Delta],
        drop: dict[str, Delta],
        keep_name: str | None = None,
        drop_name: str | None = None,
    ) -> None:
        if keep:
            self.add(keep_name or f"keep_{stem}", ablation, basis, group, "keep", keep)
        if drop:
            self.add(drop_name or f"drop_{stem}", ablation, basis, group, "drop", drop)

    def split(
        self,
        stem: str,
        ablation: str,
        basis: str,
        group: str,
        fn: Callable[[str, Delta], tuple[Delta, Delta]],
        **names: str,
    ) -> None:
        """Apply a per-tensor split; check keep + drop == dW for every tensor."""
        keep: dict[str, Delta] = {}
        drop: dict[str, Delta] = {}
        for name, delta in self.full.deltas.items():
            kept, dropped = fn(name, delta)
            bases.check_split(stem, f"{self.adapter.label}: {name}", delta, kept, dropped)
            keep[name], drop[name] = kept, dropped
        self.pair(stem, ablation, basis, group, keep, drop, names.get("keep"), names.get("drop"))


def clip_k(k: int, limit: int, options: VariantOptions, what: str) -> int | None:
    if k <= limit:
        return k
    if options.strict_k:
        raise ValueError(f"K={k} is larger than {what} ({limit}); choose K <= {limit}")
    return None


def _reference(b: VariantBuilder) -> None:
    b.emit(
        Variant(
            "full",
            "reference",
            "",
            "full",
            "full",
            b.full,
            n_tensors=len(b.full.deltas),
            layers=",".join(str(x) for x in sorted({i.layer for i in b.info.values()})),
            modules=",".join(sorted({i.role for i in b.info.values()})),
        )
    )
    zero = b.make("zero", "reference", "", "zero", "zero", dict(b.full.scaled(0.0).deltas))
    zero.energy_fraction = 0.0
    b.emit(zero)


def build_variants(
    adapter: Adapter,
    adapters: Sequence[Adapter],
    model: nn.Module,
    families: Sequence[str] = ALL_FAMILIES,
    options: VariantOptions | None = None,
) -> list[Variant]:
    """Every variant of `adapter` in the chosen families, as a list (all held in memory at once)."""
    found: list[Variant] = []
    for_each_variant(adapter, adapters, model, found.append, families, options)
    return found


def for_each_variant(
    adapter: Adapter,
    adapters: Sequence[Adapter],
    model: nn.Module,
    consume: Callable[[Variant], None],
    families: Sequence[str] = ALL_FAMILIES,
    options: VariantOptions | None = None,
) -> None:
    """Call `consume` on every variant of `adapter` in the chosen families (always `full` and `zero` first),
    in a fixed order, each as soon as it is built."""
    options = options or VariantOptions()
    unknown = sorted(set(families) - set(ALL_FAMILIES))
    if unknown:
        raise ValueError(f"--variants: unknown famil(ies) {unknown}; choose from {list(ALL_FAMILIES)}")
    info = tensor_info(model, list(adapter.delta.deltas))
    b = VariantBuilder(adapter, info, consume, options)
    # own SVDs live for this adapter only; base SVDs and shared bases for the whole run if the caller opened
    # those memos (`run_ablations` does), else for this adapter
    with memo.memoized("own_svd", "base_svd", "shared_basis"):
        _build(b, adapter, adapters, model, families, options)


def _build(
    b: VariantBuilder,
    adapter: Adapter,
    adapters: Sequence[Adapter],
    model: nn.Module,
    families: Sequence[str],
    options: VariantOptions,
) -> None:
    from steerlab.analysis.cross_variants import cross_variants
    from steerlab.analysis.native import native_reshapes, native_variants
    from steerlab.analysis.param_variants import param_variants

    _reference(b)
    if "cross" in families:
        cross_variants(b, adapters, options)
    if "layer" in families:
        layer_variants(b)
    if "param" in families:
        param_variants(b, model, options)
    if "native" in families:
        for v in native_variants(adapter, model, b.info):
            b.split(v.stem, "native", v.basis, v.group, v.fn, keep=v.keep_name, drop=v.drop_name)
        generator = torch.Generator().manual_seed(options.seed + 104729)
        for name, deltas in native_reshapes(adapter, generator).items():
            b.add(name, "native", "delora_norms", name, "reshape", deltas)
