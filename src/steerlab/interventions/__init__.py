"""Interventions: activation additions (hooks), weight deltas (exact restore), prompt interventions."""

from steerlab.interventions import activation_variants, vector_bank  # noqa: F401  (register kinds)
from steerlab.interventions.activation import ActivationAddition, LayerHookIntervention
from steerlab.interventions.base import (
    Intervention,
    InterventionError,
    applied,
    load_intervention,
    register_kind,
)
from steerlab.interventions.prompt import PromptIntervention
from steerlab.interventions.weight import LowRankDelta, WeightDelta

__all__ = [
    "ActivationAddition",
    "Intervention",
    "InterventionError",
    "LayerHookIntervention",
    "LowRankDelta",
    "PromptIntervention",
    "WeightDelta",
    "applied",
    "load_intervention",
    "register_kind",
]
