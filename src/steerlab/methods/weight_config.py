"""Configs of the weight-steering families: one dataclass per PEFT adapter family, with its own defaults.

Each config knows how to build its PEFT config for a list of target modules and checks that its
shape settings fit those modules (a rank wider than a layer is an error that names the layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import nn

LINEAR_ROLES = ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down")


@dataclass
class WeightSteeringConfig:
    """Settings shared by every family: contrast data, layer range, optimiser, delta mode.

    Defaults are sized for a 2-core CPU and SmolLM2-135M (contrast generation plus both poles of one
    family in a few minutes); scale `n_questions`, `samples_per_question` and `epochs` up on a GPU.
    """

    family: ClassVar[str] = ""
    #: True when building the adapter is costly enough (PiSSA's SVDs) that both poles copy one initial
    #: adapter instead of each initialising its own (identical under the seed; one more model copy held).
    costly_init: ClassVar[bool] = False

    # contrast data (cached; shared by all families on the same model, behaviour and data seed)
    n_questions: int | None = 64
    samples_per_question: int = 1
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    generation_batch: int = 64  # ~1.2x faster than 16 on a CPU; in the cache key
    data_seed: int | None = None
    filter_responses: bool = True
    use_cache: bool = True
    # where the adapter goes: decoder blocks whose depth fraction lies in layer_range, these roles
    layer_range: tuple[float, float] = (0.3, 0.8)
    target_roles: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    # optimiser
    learning_rate: float = 5e-4
    epochs: int = 3
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    val_fraction: float = 0.15
    # the delta
    bisector: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.layer_range = tuple(float(x) for x in self.layer_range)  # type: ignore[assignment]
        self.target_roles = tuple(self.target_roles)
        low_high = self.layer_range
        if len(low_high) != 2 or not 0.0 <= low_high[0] < low_high[1] <= 1.0:
            raise ValueError(
                f"layer_range must be two depth fractions 0 <= low < high <= 1, got {list(low_high)}"
            )
        unknown = [role for role in self.target_roles if role not in LINEAR_ROLES]
        if unknown or not self.target_roles:
            raise ValueError(
                f"target_roles {list(self.target_roles)}: each must be one of {list(LINEAR_ROLES)}"
            )
        for name in (
            "learning_rate",
            "epochs",
            "batch_size",
            "max_new_tokens",
            "samples_per_question",
            "generation_batch",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        """The PEFT config for these full module names (`feedforward`: the MLP-input ones, for IA3)."""
        raise NotImplementedError

    def check_shapes(self, modules: dict[str, nn.Module]) -> None:
        """Raise ValueError if a shape setting does not fit a target module."""

    @property
    def low_rank(self) -> bool:
        """True when each side's delta is exactly low-rank factors (LoRA, PiSSA)."""
        return False


@dataclass
class _RankedConfig(WeightSteeringConfig):
    rank: int = 8
    alpha: float = 16.0

    def check_shapes(self, modules: dict[str, nn.Module]) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        for name, module in modules.items():
            out_features, in_features = cast(torch.Tensor, module.weight).shape
            if self.rank > min(out_features, in_features):
                raise ValueError(
                    f"rank {self.rank} is larger than layer {name!r} allows: its weight is {out_features} x "
                    f"{in_features}, so the rank must be <= {min(out_features, in_features)}"
                )


@dataclass
class LoraSteeringConfig(_RankedConfig):
    """LoRA (Hu et al. 2021): dW = (alpha/r) B A; B starts at zero."""

    family: ClassVar[str] = "lora"

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT stubs say int; a float works
            lora_dropout=0.0,
            target_modules=targets,
            bias="none",
        )

    @property
    def low_rank(self) -> bool:
        return True


@dataclass
class DoraSteeringConfig(_RankedConfig):
    """DoRA (Liu et al. 2024): LoRA on the direction plus a learned per-column magnitude (full-rank merge)."""

    family: ClassVar[str] = "dora"

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT stubs say int; a float works
            lora_dropout=0.0,
            target_modules=targets,
            use_dora=True,
        )


@dataclass
class PissaSteeringConfig(_RankedConfig):
    """PiSSA (Meng et al. 2024): LoRA factors start at the top-r singular part of W (exact SVD).

    Each side's delta is the trained change s (B A - B0 A0); the shared initial term cancels in the
    difference, so dW stays exactly rank 2r. A lower learning rate than LoRA: the factors start large.
    """

    family: ClassVar[str] = "pissa"
    costly_init: ClassVar[bool] = True
    learning_rate: float = 2e-4

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT stubs say int; a float works
            lora_dropout=0.0,
            target_modules=targets,
            init_lora_weights="pissa",
        )

    @property
    def low_rank(self) -> bool:
        return True


@dataclass
class DeloraSteeringConfig(_RankedConfig):
    """DeLoRA (Bini et al. 2025): normalised low-rank update with a learned Frobenius bound lambda.

    PEFT's docs advise a learning rate 10-100x that of LoRA; the default is 20x. PEFT starts B at zero
    and normalises each rank-1 term, so after the first step every term has its full size lambda / r
    (relative to the weight's column norms) in a still-random direction. PEFT's suggested lambda of 10-15
    made that first step wreck smollm2-135m (training loss ~10 nats, calibrated c ~ 0.05); with 0.3
    the validation loss stays within 2% of the base model's and the delta steers at c ~ 1.
    """

    family: ClassVar[str] = "delora"
    learning_rate: float = 1e-2
    delora_lambda: float = 0.3

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import DeloraConfig

        return DeloraConfig(
            r=self.rank,
            delora_lambda=self.delora_lambda,  # type: ignore[arg-type]  # PEFT stubs say int; a float works
            target_modules=targets,
        )


@dataclass
class OftSteeringConfig(WeightSteeringConfig):
    """OFT (Qiu et al. 2023): a learned block-diagonal rotation of the input side of each weight.

    On smollm2-135m (honesty, 64 questions, 3 epochs) 2e-3 wrecked the model in the first epoch
    (validation loss 1.36 vs ~1.0, answer mass on Yes/No 0.076 -> 0.007 at c = -1) and 5e-4 still raised
    the validation loss; 2e-4 keeps it flat while the delta steers.
    """

    family: ClassVar[str] = "oft"
    learning_rate: float = 2e-4
    block_size: int = 32

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import OFTConfig

        return OFTConfig(r=0, oft_block_size=self.block_size, target_modules=targets, module_dropout=0.0)

    def check_shapes(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            in_features = cast(torch.Tensor, module.weight).shape[1]
            if self.block_size < 1 or self.block_size > in_features or in_features % self.block_size:
                raise ValueError(
                    f"OFT block_size {self.block_size} does not fit layer {name!r} with {in_features} input features "
                    "(it must divide the input width)"
                )


@dataclass
class Ia3SteeringConfig(WeightSteeringConfig):
    """IA3 (Liu et al. 2022): learned rescaling of k, v outputs and of the MLP down-projection input."""

    family: ClassVar[str] = "ia3"
    learning_rate: float = 1e-2
    target_roles: tuple[str, ...] = ("k", "v", "down")

    def peft_config(self, targets: list[str], feedforward: list[str]) -> Any:
        from peft import IA3Config

        return IA3Config(target_modules=targets, feedforward_modules=feedforward)


FAMILY_CONFIGS: dict[str, type[WeightSteeringConfig]] = {
    cls.family: cls
    for cls in (
        LoraSteeringConfig,
        DoraSteeringConfig,
        PissaSteeringConfig,
        DeloraSteeringConfig,
        OftSteeringConfig,
        Ia3SteeringConfig,
    )
}


def family_config(family: str) -> type[WeightSteeringConfig]:
    """The config class of an adapter family; an unknown name lists the known ones."""
    if family not in FAMILY_CONFIGS:
        raise ValueError(
            f"unknown weight-steering family {family!r}; known families: {', '.join(FAMILY_CONFIGS)}"
        )
    return FAMILY_CONFIGS[family]
