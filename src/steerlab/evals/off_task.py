"""`off-task`: collateral damage of a steer on things that have nothing to do with the behaviour.

Two parts, both on steerlab's own data:
- ``kl``: per-token KL(steered || base) over a fixed continuation of neutral prompts
  (``offtask_eval.json``, disjoint from the calibration prompts). The continuation is generated once,
  greedily, by the unsteered model, then teacher-forced at every coefficient.
- ``knowledge``: log-likelihood of short reference answers to general-knowledge questions
  (``knowledge_qa.jsonl``), teacher-forced under steering.

Native score (for the shared table columns): ``y = -mean KL`` on kl rows and ``y = mean log P per answer
token`` on knowledge rows, so y drops when the steer damages the model; ``logratio`` is the change of that
score against c = 0 and ``pmass`` is ``exp(-mean KL)`` / the per-token answer probability. The summary
reports the mean KL, the mean per-prompt p95 KL and the answer log-likelihood change per coefficient, with bootstrap CIs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab.chat import ChatPrompt
from steerlab.evals.common import (
    FieldSpec,
    RunContext,
    Schema,
    SchemaError,
    applied_at,
    chat_strings,
    load_records,
    progress_bar,
    require_rows,
)
from steerlab.evals.off_task_base import (
    UnsteeredReference,
    base_continuation_logprobs,
    data_key,
    unsteered_reference,
)
from steerlab.evals.registry import register_eval
from steerlab.metrics import bootstrap_ci
from steerlab.paths import package_data
from steerlab.report_spec import ReportMetric, ReportSpec
from steerlab.scoring import generate_ids, score_continuations
from steerlab.token_kl import token_kl

PROMPTS_FILE = "offtask_eval.json"
KNOWLEDGE_FILE = "knowledge_qa.jsonl"
KNOWLEDGE_SCHEMA = Schema(
    "knowledge QA", {"id": FieldSpec("str"), "question": FieldSpec("str"), "answer": FieldSpec("str")}
)


@dataclass(frozen=True)
class OffTaskConfig:
    """``prompts_file``: a JSON list of neutral prompts; ``knowledge_file``: rows {id, question, answer}.
    ``n_tokens``: length of the base continuation the KL is measured over."""

    prompts_file: str | None = None
    knowledge_file: str | None = None
    n_tokens: int = 32
    max_batch: int = 16

    def data_files(self) -> list[str | Path]:
        """The files this config reads, resolved now (recorded and hashed by steerlab.provenance)."""
        return [
            self.prompts_file or package_data(PROMPTS_FILE),
            self.knowledge_file or package_data(KNOWLEDGE_FILE),
        ]


def load_prompts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"off-task: prompts file {str(path)!r} does not exist")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise SchemaError(f"{path}: expected a JSON list of prompt strings")
    for number, item in enumerate(data, start=1):
        if not isinstance(item, str) or not item.strip():
            raise SchemaError(f"{path}: item {number}: expected a non-empty prompt string, got {item!r}")
    require_rows(data, f"off-task prompts from {path}")
    return list(data)


def answer_logprobs(
    ctx: RunContext, texts: list[str], answers: list[list[int]], coeff: float, max_batch: int
) -> list[np.ndarray]:
    """Per-token log P of each teacher-forced answer after its prompt, at ``coeff``."""
    with applied_at(ctx.model, ctx.intervention, coeff):
        scores = score_continuations(ctx.model, ctx.tok, texts, answers, max_batch=max_batch)
    return scores.token_logprobs


def _unsteered(
    ctx: RunContext,
    config: OffTaskConfig,
    base_texts: list[str],
    base_qa_texts: list[str],
    answers: list[list[int]],
) -> UnsteeredReference:
    """The unsteered model's greedy continuations, its log-softmax over them and its answer log-probs."""
    eos = ctx.tok.eos_token_id if ctx.tok.eos_token_id is not None else 0
    generated = generate_ids(
        ctx.model, ctx.tok, base_texts, max_new_tokens=config.n_tokens, max_batch=config.max_batch
    )
    continuations = [ids or [eos] for ids in generated]
    return UnsteeredReference(
        continuations=continuations,
        kl_logprobs=base_continuation_logprobs(
            ctx.model, ctx.tok, base_texts, continuations, max_batch=config.max_batch
        ),
        answer_logprobs=score_continuations(
            ctx.model, ctx.tok, base_qa_texts, answers, max_batch=config.max_batch
        ).token_logprobs,
    )


def summarise_off_task(
    table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, **_: Any
) -> dict[str, Any]:
    """Per coefficient: mean per-token KL, the mean over prompts of each prompt's p95 token KL, mean answer
    log P per token, and its change vs c = 0."""
    metrics = []

    def add(metric: str, coeff: float, fn: Any, *arrays: np.ndarray) -> None:
        point, low, high = bootstrap_ci(fn, *arrays, n_boot=n_boot, seed=seed, alpha=alpha)
        metrics.append(
            {
                "metric": metric,
                "coeff": coeff,
                "value": point,
                "ci_low": low,
                "ci_high": high,
                "n_rows": len(arrays[0]),
            }
        )

    mean = lambda x: np.mean(x, axis=-1)  # noqa: E731
    kl = table[table["part"] == "kl"]
    qa = table[table["part"] == "knowledge"].sort_values("row_id")
    coeffs = sorted(float(c) for c in table["coeff"].unique())
    base = qa[qa["coeff"] == 0.0]["logp_answer_per_token"].to_numpy() if 0.0 in coeffs else None
    for coeff in coeffs:
        k = kl[kl["coeff"] == coeff]
        q = qa[qa["coeff"] == coeff]["logp_answer_per_token"].to_numpy()
        add("kl_mean", coeff, mean, k["kl_mean"].to_numpy())
        add("mean_prompt_kl_p95", coeff, mean, k["kl_p95"].to_numpy())
        add("logp_answer_per_token", coeff, mean, q)
        if base is not None and coeff != 0.0:
            add("delta_logp_answer_per_token", coeff, lambda a, b: np.mean(a - b, axis=-1), q, base)
    return {"metrics": metrics, "n_rows": int(table["row_id"].nunique())}


@register_eval(
    "off-task",
    OffTaskConfig,
    "Collateral damage: per-token KL on neutral prompts and log-likelihood of knowledge answers",
    native_pole="the model is less damaged (y = -mean KL on kl rows, mean answer log P on knowledge rows)",
    row_schema="a JSON list of neutral prompts (prompts_file) and " + KNOWLEDGE_SCHEMA.describe(),
    default_data="steerlab's offtask_eval.json (20 prompts) and knowledge_qa.jsonl (40 questions)",
    summarise=summarise_off_task,
    report=ReportSpec(
        metrics=(
            ReportMetric("kl_mean", "mean KL"),
            ReportMetric("mean_prompt_kl_p95", "p95 KL"),
            ReportMetric("delta_logp_answer_per_token", "delta answer logp/token"),
        ),
        score_plot=False,
        headline=False,
    ),
    shares_zero=False,  # its log-ratio is taken against c = 0 inside the run
)
def run_off_task(ctx: RunContext, config: OffTaskConfig) -> pd.DataFrame:
    if config.n_tokens < 1:
        raise ValueError(f"off-task: n_tokens must be >= 1, got {config.n_tokens}")
    neutral = load_prompts(config.prompts_file or package_data(PROMPTS_FILE))
    knowledge = load_records(config.knowledge_file or str(package_data(KNOWLEDGE_FILE)), KNOWLEDGE_SCHEMA)
    tok = ctx.tok
    kl_prompts = [ChatPrompt(p) for p in neutral]
    qa_prompts = [ChatPrompt(r["question"]) for r in knowledge]
    base_texts = chat_strings(tok, kl_prompts, None, 0.0)
    base_qa_texts = chat_strings(tok, qa_prompts, None, 0.0)
    answers = [tok(" " + r["answer"].strip(), add_special_tokens=False)["input_ids"] for r in knowledge]
    reference = unsteered_reference(
        ctx.model,
        data_key(base_texts, base_qa_texts, answers, config.n_tokens, config.max_batch, tok.eos_token_id),
        lambda: _unsteered(ctx, config, base_texts, base_qa_texts, answers),
    )
    continuations = reference.continuations
    meta = pd.DataFrame(
        {
            "row_id": [f"kl:{i + 1}" for i in range(len(neutral))] + [f"qa:{r['id']}" for r in knowledge],
            "label": 1,
            "part": ["kl"] * len(neutral) + ["knowledge"] * len(knowledge),
            "n_tokens": [len(c) for c in continuations] + [len(a) for a in answers],
        }
    )
    bar = progress_bar(len(meta) * len(ctx.coeffs), ctx.eval_name, ctx.show_progress)
    raw: dict[float, np.ndarray] = {}
    columns: dict[float, dict[str, np.ndarray]] = {}
    try:
        for coeff in ctx.coeffs:
            steered = chat_strings(tok, kl_prompts, ctx.intervention, coeff)
            steered_qa = chat_strings(tok, qa_prompts, ctx.intervention, coeff)
            if coeff == 0.0 and steered == base_texts and steered_qa == base_qa_texts:
                # c = 0 is the unsteered model exactly: KL(base || base) = 0 and the reference's answers
                kl: list[np.ndarray] = [np.zeros(len(c)) for c in continuations]
                qa = reference.answer_logprobs
            else:
                kl = token_kl(
                    ctx.model,
                    tok,
                    steered,
                    continuations,
                    functools.partial(applied_at, ctx.model, ctx.intervention, coeff),
                    max_batch=config.max_batch,
                    base_prompts=base_texts,
                    base_logprobs=reference.kl_logprobs,
                )
                qa = answer_logprobs(ctx, steered_qa, answers, coeff, config.max_batch)
            bar.update(len(meta))
            kl_mean = np.array([k.mean() for k in kl] + [np.nan] * len(qa))
            kl_p95 = np.array([np.quantile(k, 0.95) for k in kl] + [np.nan] * len(qa))
            lp_mean = np.array([np.nan] * len(kl) + [a.mean() for a in qa])
            lp_sum = np.array([np.nan] * len(kl) + [a.sum() for a in qa])
            score = np.where(meta["part"] == "kl", -np.nan_to_num(kl_mean), np.nan_to_num(lp_mean))
            raw[coeff] = score
            columns[coeff] = {
                "kl_mean": kl_mean,
                "kl_p95": kl_p95,
                "logp_answer": lp_sum,
                "logp_answer_per_token": lp_mean,
                "y": score,
            }
    finally:
        bar.close()
    baseline = raw.get(0.0, raw[ctx.coeffs[0]])
    for cols in columns.values():
        cols["logratio"] = cols["y"] - baseline
        cols["pmass"] = np.exp(cols["y"])
    return ctx.table(meta, columns)
