"""Unsupervised steering vectors (no behaviour labels): MELBO, Jacobian power iteration, random controls.

MELBO (Mack & Turner 2024) learns biases of norm R, added at a source layer's output, that most
change a later layer's activations on a few prompts. Power iteration finds the top right singular
vectors of the Jacobian of those activations w.r.t. such a bias. Random vectors, norm-matched to the
behaviour's mean difference, give the null band. Each returns a :class:`VectorBank` keeping every
vector; which index steers a behaviour is chosen later on held-out data (``select_best_index``).

Modules: :mod:`.unsupervised_probe` (shared config, prompts, probe), :mod:`.unsupervised_melbo`,
:mod:`.unsupervised_power`; importing this module registers ``melbo`` and ``power_iter``.
"""

from steerlab.methods.unsupervised_melbo import MelboConfig, fit_melbo
from steerlab.methods.unsupervised_power import PowerIterConfig, fit_power_iter, jacobian_top_singular
from steerlab.methods.unsupervised_probe import TargetProbe, UnsupervisedConfig, unsupervised_prompts

__all__ = [
    "MelboConfig",
    "PowerIterConfig",
    "TargetProbe",
    "UnsupervisedConfig",
    "fit_melbo",
    "fit_power_iter",
    "jacobian_top_singular",
    "unsupervised_prompts",
]
