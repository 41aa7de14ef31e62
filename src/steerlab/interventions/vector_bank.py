"""A bank of candidate steering vectors (unsupervised methods, random controls) with a chosen index.

MELBO, power iteration and random controls produce several vectors and no label says which one moves
a behaviour. The bank keeps all of them; the selected ``index`` is part of the intervention (saved
with it), ``select(i)`` picks another, and :func:`select_best_index` chooses with a caller's score
(the bench passes one that scores a held-out split of an eval; this module never imports evals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from steerlab.interventions.activation import LayerHookIntervention
from steerlab.interventions.base import InterventionError, check_finite, register_kind


@register_kind
class VectorBank(LayerHookIntervention):
    """``vectors[layer]`` is [k, hidden]; applying adds ``c * vectors[layer][index]`` at every layer."""

    kind: ClassVar[str] = "vector_bank"

    def __init__(
        self,
        vectors: dict[int, torch.Tensor],
        index: int = 0,
        positions: str = "all",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not vectors:
            raise InterventionError("VectorBank needs at least one layer of vectors")
        self.vectors = {int(layer): torch.as_tensor(v).detach().float() for layer, v in vectors.items()}
        sizes = {v.shape[0] for v in self.vectors.values()}
        for layer, bank in self.vectors.items():
            if bank.dim() != 2 or bank.shape[0] == 0:
                raise InterventionError(
                    f"VectorBank: layer {layer} must hold a [k, hidden] tensor, got {tuple(bank.shape)}"
                )
        if len(sizes) != 1:
            raise InterventionError(
                f"VectorBank: every layer must hold the same number of vectors, got {sorted(sizes)}"
            )
        check_finite({f"vectors.{k}": v for k, v in self.vectors.items()}, "VectorBank")
        self.size = sizes.pop()
        if not 0 <= index < self.size:
            raise InterventionError(
                f"VectorBank index {index} is out of range: the bank holds {self.size} vectors"
            )
        self.index = int(index)
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[int, torch.Tensor] = {}

    def select(self, index: int) -> VectorBank:
        """The same bank with another vector selected (tensors are shared, meta copied)."""
        selected = VectorBank(self.vectors, index, self.positions, dict(self.meta))
        selected.meta["selected_index"] = int(index)
        return selected

    def vector(self, layer: int, index: int | None = None) -> torch.Tensor:
        return self.vectors[layer][self.index if index is None else index]

    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        self._prepared = {layer: bank[self.index].to(device, dtype) for layer, bank in self.vectors.items()}

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        return hidden + coeff * self._prepared[layer]

    def check_compatible(self, model: nn.Module) -> None:
        self._check_layers(model, {layer: bank.shape[-1] for layer, bank in self.vectors.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"vectors.{layer}": bank for layer, bank in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions, "index": self.index}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> VectorBank:
        vectors = {
            int(name.split(".", 1)[1]): t for name, t in tensors.items() if name.startswith("vectors.")
        }
        return cls(vectors, int(params.get("index", 0)), params.get("positions", "all"), meta)

    def summary(self) -> str:
        return f"layers={self.layers()}, vectors={self.size}, index={self.index}"


@dataclass
class IndexSelection:
    """The outcome of :func:`select_best_index`: the chosen index, every score, and the selected bank."""

    index: int
    scores: dict[int, float] = field(default_factory=dict)
    bank: VectorBank | None = None


def select_best_index(
    bank: VectorBank,
    score_fn: Callable[[VectorBank], float],
    indices: Sequence[int] | None = None,
) -> IndexSelection:
    """Score ``bank.select(i)`` for each index with `score_fn` (higher is better) and keep the best.

    Non-finite scores are skipped; if every score is non-finite that is an error naming the indices.
    Ties go to the lowest index. The selected bank records the scores in ``meta['selection_scores']``.
    """
    candidates = list(range(bank.size)) if indices is None else [int(i) for i in indices]
    if not candidates:
        raise InterventionError("select_best_index: no indices to choose from")
    for index in candidates:
        if not 0 <= index < bank.size:
            raise InterventionError(
                f"select_best_index: index {index} is out of range for a bank of {bank.size}"
            )
    scores: dict[int, float] = {}
    for index in candidates:
        scores[index] = float(score_fn(bank.select(index)))
    finite = {i: s for i, s in scores.items() if s == s and abs(s) != float("inf")}
    if not finite:
        raise InterventionError(f"select_best_index: every score was non-finite for indices {candidates}")
    best = max(finite, key=lambda i: (finite[i], -i))
    selected = bank.select(best)
    selected.meta["selection_scores"] = {str(i): s for i, s in scores.items()}
    return IndexSelection(index=best, scores=scores, bank=selected)
