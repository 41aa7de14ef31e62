"""Judged traits: a behaviour (its extraction data) plus open-ended eval questions, a rubric and lock-in
scenarios, in ``steerlab/data/traits/<name>.toml`` or a user's file of the same shape:

    name = "deception"
    behavior = "deception"        # behaviour name or file: persona pairs for extraction (optional: = name)
    questions = ["...", "..."]    # open-ended eval questions, disjoint from the extraction data
    [rubric]                      # see steerlab.judges.rubric: version, definition, optional prompts
    version = 1
    definition = "..."
    [[scenarios]]                 # optional: user message, and a positive / negative assistant text that
    user = "..."                  # ends after the behaviour has already happened (lock-in)
    positive = "..."
    negative = "..."
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steerlab.paths import PACKAGE_DATA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Scenario", "Trait", "TraitFileError", "get_trait", "list_traits", "load_trait_file"]

TRAIT_DIR = PACKAGE_DATA / "traits"
KEYS = ("name", "behavior", "questions", "rubric", "scenarios")


class TraitFileError(ValueError):
    """A trait file is malformed (names the file and the field) or a trait has no questions."""


@dataclass(frozen=True)
class Scenario:
    """A lock-in contrast pair: one user message, and an assistant text per pole that ends after the
    behaviour has already happened. Also a contrast item (`prompt_row`) for activation extraction."""

    user: str
    positive: str
    negative: str

    def prompt_row(self, pole: Literal["positive", "negative"]) -> tuple[str | None, str, str]:
        """(system, user, assistant prefix) of one pole: no system prompt; the completion differs."""
        if pole not in ("positive", "negative"):
            raise ValueError(f"pole must be 'positive' or 'negative', got {pole!r}")
        return None, self.user, self.positive if pole == "positive" else self.negative


@dataclass(frozen=True)
class Trait:
    name: str
    behavior: str
    questions: tuple[str, ...]
    rubric: Mapping[str, Any] = field(hash=False)
    scenarios: tuple[Scenario, ...] = ()
    source: str = ""


def _fail(path: Path, fld: str, problem: str) -> TraitFileError:
    return TraitFileError(f"trait file {str(path)!r}: field {fld!r} {problem}")


def load_trait_file(path: str | Path) -> Trait:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"trait file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise TraitFileError(f"trait file {str(path)!r} does not parse: {err}") from None
    for key in data:
        if key not in KEYS:
            raise _fail(path, key, f"is not a known field; a trait file has {list(KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, "name", "must be a non-empty string")
    questions = data.get("questions", [])
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise _fail(path, "questions", "must be a list of non-empty strings")
    if not questions:
        raise _fail(path, "questions", "is empty or missing: a judged trait needs open-ended eval questions")
    rubric = data.get("rubric", {})
    if not isinstance(rubric, Mapping):
        raise _fail(path, "rubric", "must be a table (version, definition, ...)")
    scenarios = []
    for i, item in enumerate(data.get("scenarios", [])):
        if not isinstance(item, Mapping) or set(item) != {"user", "positive", "negative"}:
            raise _fail(path, f"scenarios[{i}]", "must have exactly the keys user, positive, negative")
        scenarios.append(Scenario(str(item["user"]), str(item["positive"]), str(item["negative"])))
    behavior = data.get("behavior", name)
    if isinstance(behavior, str) and behavior.endswith((".toml", ".json", ".yaml", ".yml")):
        behavior = str((path.parent / behavior).expanduser())
    return Trait(name, str(behavior), tuple(questions), dict(rubric), tuple(scenarios), str(path))


def list_traits() -> list[Trait]:
    return [load_trait_file(p) for p in sorted(TRAIT_DIR.glob("*.toml"))]


def get_trait(name_or_path: str | Path | Trait) -> Trait:
    """A built-in trait by name, or a trait file by path."""
    if isinstance(name_or_path, Trait):
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".toml" or path.is_file():
        return load_trait_file(path)
    builtin = TRAIT_DIR / f"{name_or_path}.toml"
    if builtin.is_file():
        return load_trait_file(builtin)
    known = sorted(p.stem for p in TRAIT_DIR.glob("*.toml"))
    from steerlab.registry import UnknownNameError

    raise UnknownNameError("trait", str(name_or_path), known, "built-in traits (or pass a trait .toml file)")
