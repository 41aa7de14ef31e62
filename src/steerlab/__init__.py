"""steerlab: one interface, one calibration, one set of evals for steering language models."""

from __future__ import annotations

__version__ = "0.1.0"

from steerlab.chat import ChatPrompt, format_chat
from steerlab.interventions import (
    ActivationAddition,
    Intervention,
    InterventionError,
    LowRankDelta,
    PromptIntervention,
    WeightDelta,
    applied,
    load_intervention,
)
from steerlab.models import ModelSpecError, load_model, model_info
from steerlab.scoring import ChoiceScores, generate, score_choices, token_kl

__all__ = [
    "ActivationAddition",
    "ChatPrompt",
    "ChoiceScores",
    "Intervention",
    "InterventionError",
    "LowRankDelta",
    "ModelSpecError",
    "PromptIntervention",
    "WeightDelta",
    "__version__",
    "applied",
    "format_chat",
    "generate",
    "load_intervention",
    "load_model",
    "model_info",
    "score_choices",
    "token_kl",
]
