"""The ``layer`` family of ablation variants: layer thirds, single layers and leave-one-out, module groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from steerlab.analysis.variants import VariantBuilder

__all__ = ["MODULE_GROUPS", "layer_variants"]

MODULE_GROUPS: dict[str, set[str]] = {
    "residual_write": {"o", "down"},
    "attn_o": {"o"},
    "mlp_down": {"down"},
    "qkv": {"q", "k", "v", "qkv"},
    "up_gate": {"up", "gate", "gate_up"},
    "attention": {"q", "k", "v", "qkv", "o"},
    "mlp": {"up", "gate", "gate_up", "down"},
}


def layer_variants(b: VariantBuilder) -> None:
    """Keep/drop splits of `b`'s adapter by layer third, by single layer, and by module group."""
    names = list(b.full.deltas)
    layers = sorted({b.info[n].layer for n in names})
    thirds = [list(map(int, part)) for part in np.array_split(np.array(layers), 3) if len(part)]
    for label, part in zip(("early", "mid", "late"), thirds, strict=False):
        keep = {n: d for n, d in b.full.deltas.items() if b.info[n].layer in part}
        drop = {n: d for n, d in b.full.deltas.items() if b.info[n].layer not in part}
        if keep and drop:
            b.pair(
                label,
                "layer",
                "layers",
                f"{label}_third",
                keep,
                drop,
                f"{label}_third_only",
                f"{label}_third_dropped",
            )
    if len(layers) > 1:
        for layer in layers:
            keep = {n: d for n, d in b.full.deltas.items() if b.info[n].layer == layer}
            drop = {n: d for n, d in b.full.deltas.items() if b.info[n].layer != layer}
            b.pair(
                str(layer),
                "layer",
                "layers",
                f"layer_{layer}",
                keep,
                drop,
                f"layer_{layer}_only",
                f"leave_layer_{layer}_out",
            )
    for group, roles in MODULE_GROUPS.items():
        keep = {n: d for n, d in b.full.deltas.items() if b.info[n].role in roles}
        drop = {n: d for n, d in b.full.deltas.items() if b.info[n].role not in roles}
        if keep and drop:
            b.pair(group, "module", "modules", group, keep, drop, f"{group}_only", f"{group}_dropped")
