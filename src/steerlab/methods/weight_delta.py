"""From two trained adapters to one weight delta: dW = (W_pos - W_base) - (W_neg - W_base).

LoRA-type sides are read as exact low-rank factors (dW_side = s B A, and for PiSSA s (B A - B0 A0));
the difference then stays factored, [s B_pos, -s B_neg] @ [A_pos; A_neg], with PiSSA's shared initial
term cancelling exactly. Other families merge the adapter and subtract the base weights (full tensors).
The optional bisector mode normalises each side before the difference and rescales the result to the
norm of the plain difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from steerlab.interventions import LowRankDelta
from steerlab.interventions.weight import Delta
from steerlab.methods.weight_train import TrainedAdapter

Term = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SideDelta:
    """One pole's change to the base weights, per parameter name: a sum of factor terms, or a dense tensor."""

    terms: dict[str, list[Term]] = field(default_factory=dict)
    dense_deltas: dict[str, torch.Tensor] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [*self.terms, *self.dense_deltas]

    def dense(self, name: str) -> torch.Tensor:
        if name in self.dense_deltas:
            return self.dense_deltas[name]
        return sum((up @ down for up, down in self.terms[name]), start=torch.zeros(()))

    def norm(self) -> float:
        return float(sum(float(self.dense(name).pow(2).sum()) for name in self.names()) ** 0.5)


def side_delta(trained: TrainedAdapter, base_model: nn.Module, low_rank: bool) -> SideDelta:
    """Read one trained adapter's change to the base weights (consumes `trained`: it may be merged)."""
    side = SideDelta()
    if low_rank:
        inner = trained.peft_model.base_model.model
        for module_name in trained.targets:
            layer = inner.get_submodule(module_name)
            scale = float(layer.scaling["default"])
            up = layer.lora_B["default"].weight.detach().float() * scale
            down = layer.lora_A["default"].weight.detach().float()
            terms = [(up.clone(), down.clone())]
            if module_name in trained.initial_factors:
                initial_up, initial_down = trained.initial_factors[module_name]
                terms.append((-initial_up.float(), initial_down.float()))
            side.terms[f"{module_name}.weight"] = terms
        return side
    merged = trained.peft_model.merge_and_unload()
    merged_params = dict(merged.named_parameters())
    base_params = dict(base_model.named_parameters())
    for module_name in trained.targets:
        name = f"{module_name}.weight"
        side.dense_deltas[name] = (
            merged_params[name].detach().float() - base_params[name].detach().float()
        ).clone()
    return side


def _difference_norm(pos: SideDelta, neg: SideDelta, a: float, b: float) -> float:
    total = 0.0
    for name in dict.fromkeys([*pos.names(), *neg.names()]):
        difference = _dense_or_zero(pos, name) * a - _dense_or_zero(neg, name) * b
        total += float(difference.pow(2).sum())
    return total**0.5


def _dense_or_zero(side: SideDelta, name: str) -> torch.Tensor:
    return side.dense(name) if name in side.names() else torch.zeros(())


def contrast_delta(pos: SideDelta, neg: SideDelta, bisector: bool = False) -> dict[str, Delta]:
    """dW = a dW_pos - b dW_neg (a = b = 1, or the bisector weights), factored where both sides are.

    Parameters whose difference is exactly zero are left out.
    """
    a = b = 1.0
    if bisector:
        norm_pos, norm_neg = pos.norm(), neg.norm()
        if norm_pos == 0.0 or norm_neg == 0.0:
            raise ValueError(
                f"bisector mode needs both sides to change the weights (norms {norm_pos:g}, {norm_neg:g})"
            )
        plain = _difference_norm(pos, neg, 1.0, 1.0)
        unit = _difference_norm(pos, neg, 1.0 / norm_pos, 1.0 / norm_neg)
        if unit == 0.0:
            raise ValueError("bisector mode is undefined: the two normalised sides are identical")
        a, b = plain / unit / norm_pos, plain / unit / norm_neg
    deltas: dict[str, Delta] = {}
    for name in dict.fromkeys([*pos.names(), *neg.names()]):
        if name in pos.terms and name in neg.terms:
            delta: Delta = _factored(pos.terms[name], neg.terms[name], a, b)
            if isinstance(delta, LowRankDelta) and delta.rank == 0:
                continue
        else:
            delta = _dense_or_zero(pos, name) * a - _dense_or_zero(neg, name) * b
            if not bool(delta.any()):
                continue
        deltas[name] = delta
    if not deltas:
        raise ValueError("the positive and negative adapters changed the weights identically: dW is zero")
    return deltas


def _factored(pos_terms: list[Term], neg_terms: list[Term], a: float, b: float) -> LowRankDelta:
    """[a U_pos, -b U_neg] @ [D_pos; D_neg], dropping term pairs that are the same on both sides when
    a == b (PiSSA's initial principal part), so the rank stays 2r."""
    pos_kept, neg_kept = list(pos_terms), list(neg_terms)
    if a == b:
        for term in list(pos_kept):
            twin = next((i for i, t in enumerate(neg_kept) if _same(t, term)), None)
            if twin is not None:
                pos_kept = [t for t in pos_kept if t is not term]
                del neg_kept[twin]
    ups = [up * a for up, _ in pos_kept] + [-up * b for up, _ in neg_kept]
    downs = [down for _, down in pos_kept] + [down for _, down in neg_kept]
    if not ups:
        first_up, first_down = pos_terms[0]
        return LowRankDelta(
            first_up.new_zeros(first_up.shape[0], 0), first_down.new_zeros(0, first_down.shape[1])
        )
    return LowRankDelta(torch.cat(ups, dim=1), torch.cat(downs, dim=0))


def _same(x: Term, y: Term) -> bool:
    """Equal up to float rounding: PiSSA's SVD of the same base weight may differ in the last bits between
    the two runs (threaded LAPACK), which is far below training noise; a sign flip is not equal."""
    if x[0].shape != y[0].shape or x[1].shape != y[1].shape:
        return False
    return all(
        torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max())) for a, b in zip(x, y, strict=True)
    )
