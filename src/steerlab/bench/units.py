"""Compute one bench unit: a pure function of (unit, config, the directories of the units it reads, a model).

`UnitWorker.compute` writes the unit's files into a fresh directory it is given and touches nothing
else: no store, no progress display, no output directory. That is what lets an executor run it anywhere
(in process, or in a Ray actor on another machine) while the driver alone publishes results through the
atomic `UnitStore`. Details of a running unit (a calibration step, a selection score) go to `note`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from steerlab.atomic import dump_json
from steerlab.bench.config import BenchConfig
from steerlab.bench.plan import Unit

__all__ = ["INTERVENTION_DIR", "UnitWorker", "dump_json", "load_bench_model"]

INTERVENTION_DIR = "intervention"

Note = Callable[[str], None]


def _write(path: Path, text: str) -> None:
    """Plain write: the unit directory is private until the driver seals and publishes it."""
    path.write_text(text, encoding="utf-8")


def load_bench_model(config: BenchConfig) -> tuple[Any, Any]:
    """Load the config's model with its placement settings (device, dtype, device map, quantization)."""
    from steerlab.models import load_model

    extra: dict[str, Any] = {}
    if config.device_map is not None:
        extra["device_map"] = config.device_map
    if config.quantization is not None:
        extra["quantization"] = config.quantization
    return load_model(config.model, device=config.device, dtype=config.dtype, **extra)


class UnitWorker:
    """Holds one loaded model and computes units with it; several units share one load."""

    def __init__(
        self,
        config: BenchConfig,
        model: Any = None,
        tokenizer: Any = None,
        note: Note | None = None,
    ) -> None:
        self.config = config
        self._model, self._tokenizer = model, tokenizer
        self._fingerprint: float | None = None
        self.note: Note = note or (lambda _message: None)

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            self.note(f"loading model {self.config.model!r}")
            self._model, self._tokenizer = load_bench_model(self.config)
        return self._model, self._tokenizer

    def _weights_sum(self) -> float:
        import torch

        model, _ = self.model()
        with torch.no_grad():
            return float(sum(p.detach().double().sum() for p in model.parameters()))

    def compute(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        """Write `unit`'s files into `out`; `inputs` maps each name in ``unit.depends`` to its directory."""
        missing = [name for name in unit.depends if name not in inputs]
        if missing:
            raise RuntimeError(f"unit {unit.name} is missing its inputs {missing}")
        from steerlab.progress import ProgressEvent, progress_to

        def show(event: ProgressEvent) -> None:  # the library's progress goes into the bench's display
            self.note(f"{unit.label}: {event.line()}")

        with progress_to(show):
            getattr(self, f"_{unit.kind}")(unit, inputs, out)

    def _extract(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        from steerlab.methods import extract

        model, tok = self.model()
        if self._fingerprint is None:
            self._fingerprint = self._weights_sum()
        options = dict(self.config.method_options.get(unit.method, {}))
        intervention = extract(model, tok, self.config.behavior, unit.method, seed=unit.seed, config=options)
        if self._weights_sum() != self._fingerprint:
            raise RuntimeError(f"method {unit.method!r} left the model's weights changed after extraction")
        intervention.save(out / INTERVENTION_DIR)

    def _select(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        from steerlab.evals import evaluate
        from steerlab.interventions import load_intervention
        from steerlab.interventions.vector_bank import VectorBank, select_best_index

        model, tok = self.model()
        bank = load_intervention(inputs[unit.depends[0]] / INTERVENTION_DIR, model)
        selection = self.config.selection
        c = abs(float(selection.coeff))
        if not isinstance(bank, VectorBank):
            _write(
                out / "selection.json", dump_json({"index": None, "scores": {}, "note": "not a vector bank"})
            )
            return

        def score(candidate: Any) -> float:
            table = evaluate(
                model,
                tok,
                candidate,
                selection.eval,
                [-c, c],
                behavior=self.config.behavior,
                **selection.options,
            )
            by_coeff = table.groupby("coeff")["y"].mean()
            value = float(by_coeff[c] - by_coeff[-c])
            self.note(f"select {unit.label}: vector {candidate.index} scores {value:+.4f}")
            return value

        chosen = select_best_index(bank, score)
        document = {
            "index": chosen.index,
            "scores": {str(k): v for k, v in chosen.scores.items()},
            "eval": selection.eval,
            "options": selection.options,
            "coeff": c,
            "score": "mean y at +c minus mean y at -c on the selection rows (higher = towards the positive pole)",
        }
        _write(out / "selection.json", dump_json(document))

    def _calibrate(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        from steerlab.calibrate import CalibrationConfig, calibrate, measure_fixed
        from steerlab.interventions import load_intervention
        from steerlab.interventions.vector_bank import VectorBank

        model, tok = self.model()
        intervention = load_intervention(inputs[unit.depends[0]] / INTERVENTION_DIR, model)
        if len(unit.depends) > 1:
            selection = json.loads((inputs[unit.depends[1]] / "selection.json").read_text())
            if selection["index"] is not None and isinstance(intervention, VectorBank):
                intervention = intervention.select(int(selection["index"]))
        if unit.variant is not None:
            if not isinstance(intervention, VectorBank):
                raise RuntimeError(f"null-band method {unit.method!r} did not produce a vector bank")
            if unit.variant >= intervention.size:
                raise RuntimeError(
                    f"[null] n_vectors asks for vector {unit.variant}, the bank of {unit.method!r} has "
                    f"{intervention.size}"
                )
            intervention = intervention.select(unit.variant)
        target = out / INTERVENTION_DIR
        intervention.save(target)
        config = CalibrationConfig(**self.config.calibration)

        def note(point: Any) -> None:
            self.note(f"calibrate {unit.label}: |c| = {point.coeff:.4g} KL = {point.kl:.4f}")

        if self.config.policy == "kl-ladder":
            from steerlab.bench.ladder import record_ladder

            result, _ = record_ladder(model, tok, intervention, self.config.targets, config, target, note)
        elif self.config.fractions:  # iso-KL |c| for the fraction grid (+ the fixed list's KLs)
            from steerlab.bench.fractions import calibrate_for_fractions

            result = calibrate_for_fractions(model, tok, intervention, self.config, config, target, note)
        elif self.config.policy == "fixed":
            result = measure_fixed(
                model, tok, intervention, self.config.coefficients, config, directory=target
            )
        else:
            result = calibrate(model, tok, intervention, config, directory=target, progress=note)
        if not result.converged:
            self.note(f"calibrate {unit.label}: NOT converged: {result.note}")
        _write(out / "calibration.json", dump_json(result.as_meta()))

    def _baseline(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        """The unsteered model's rows of one eval, computed once per run and read by every arm."""
        from steerlab.bench.baseline import SCORING_NOTE, score_baseline

        model, tok = self.model()
        name = str(unit.eval)
        self.note(f"{SCORING_NOTE} {name}, once for every arm")
        score_baseline(model, tok, self.config, name, dict(self.config.eval_options.get(name, {})), out)

    def _eval(self, unit: Unit, inputs: Mapping[str, Path], out: Path) -> None:
        from steerlab.bench.baseline import SHARED_ROWS_NOTE, evaluate_sharing_zero
        from steerlab.bench.extra_coeffs import main_table, merge_extra_summaries, with_extra
        from steerlab.bench.ladder import ladder_from_meta, summarise_levels
        from steerlab.bench.plan import check_data_unchanged
        from steerlab.calibrate import CoefficientPolicy, recorded_calibration
        from steerlab.calibrate_ladder import intervention_has_dose, ladder_coefficients
        from steerlab.eval_results import result_document, save_eval_result
        from steerlab.evals import summarise_eval
        from steerlab.interventions import load_intervention

        model, tok = self.model()
        intervention = load_intervention(inputs[unit.depends[0]] / INTERVENTION_DIR, model)
        ladder = ladder_from_meta(intervention) if self.config.policy == "kl-ladder" else None
        if ladder:
            coeffs = ladder_coefficients(ladder)
        else:
            policy = CoefficientPolicy(self.config.policy, self.config.coefficients)
            coeffs = policy.coefficients(recorded_calibration(intervention))
        if self.config.fractions:
            from steerlab.bench.fractions import with_fractions

            coeffs = with_fractions(coeffs, self.config.fractions, recorded_calibration(intervention))
        options = dict(self.config.eval_options.get(unit.eval or "", {}))
        scored, added = with_extra(
            coeffs, self.config.extra_coefficients, intervention_has_dose(intervention)
        )
        # the second dependency, when there is one, is the shared c = 0 baseline (bench/baseline.py)
        baseline = inputs[unit.depends[1]] if len(unit.depends) > 1 else None
        if baseline is not None:
            self.note(f"{unit.label}: {SHARED_ROWS_NOTE} {unit.depends[1]}")
        table = evaluate_sharing_zero(
            baseline, self.config, unit.inputs, model, tok, intervention, scored, options
        )
        check_data_unchanged(unit, table.attrs.get("data"))  # never store results under another data's key
        main = main_table(table, coeffs) if added else table

        def summarise(t: Any) -> dict[str, Any]:
            return summarise_eval(t, n_boot=self.config.n_boot)

        summary = summarise_levels(main, ladder, summarise) if ladder else summarise(main)
        summary = merge_extra_summaries(table, summary, added, summarise)  # [coefficients] extra
        save_eval_result(out, table, result_document(table, summary, n_boot=self.config.n_boot))
