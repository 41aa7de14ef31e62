"""The trained adapter parameters of one pole, flattened for saving beside dW (adapters.safetensors).

Keys are ``<pole>/<module path>/<peft parameter path>`` (e.g. ``positive/model.layers.3.mlp.down_proj/
lora_A.default.weight``), plus ``<pole>/<module>/scaling`` (LoRA-type scale, a 1-element tensor) and, for
PiSSA, ``<pole>/<module>/initial_up`` / ``initial_down`` (the principal part moved into the adapter at init), and
for OFT ``<pole>/<module>/oft_neumann_terms`` (PEFT's Cayley-Neumann terms building R; 0: the exact Cayley map).
`steerlab ablate` reads them for its family-native splits (rank components, DoRA magnitude vs direction...).
"""

from __future__ import annotations

import torch

from steerlab.methods.weight_train import TrainedAdapter

__all__ = ["adapter_state"]


def adapter_state(trained: TrainedAdapter, pole: str) -> dict[str, torch.Tensor]:
    """Every adapter parameter of `trained`'s target modules (base weights excluded), as float32 on CPU."""
    inner = trained.peft_model.base_model.model
    state: dict[str, torch.Tensor] = {}
    for module_name in trained.targets:
        layer = inner.get_submodule(module_name)
        for name, parameter in layer.named_parameters():
            if name.startswith("base_layer"):
                continue
            state[f"{pole}/{module_name}/{name}"] = parameter.detach().float().cpu().clone()
        scaling = getattr(layer, "scaling", None)
        if isinstance(scaling, dict) and "default" in scaling:
            state[f"{pole}/{module_name}/scaling"] = torch.tensor([float(scaling["default"])])
        rotations = getattr(layer, "oft_R", None)
        if isinstance(rotations, torch.nn.ModuleDict) and "default" in rotations:
            rotation = rotations["default"]
            terms = int(getattr(rotation, "num_cayley_neumann_terms", 0))
            if not getattr(rotation, "use_cayley_neumann", False):
                terms = 0
            state[f"{pole}/{module_name}/oft_neumann_terms"] = torch.tensor([float(terms)])
        if module_name in trained.initial_factors:
            up, down = trained.initial_factors[module_name]
            state[f"{pole}/{module_name}/initial_up"] = up.detach().float().cpu().clone()
            state[f"{pole}/{module_name}/initial_down"] = down.detach().float().cpu().clone()
    return state
