"""Behaviours: named axes with a positive and a negative pole, and the contrast prompts built from them.

A `Behavior` holds persona pairs (system prompts for each pole, several paraphrases), an optional
engineered prompt per pole, a pool of user questions, and assistant-response openings (suffixes).
`contrast_items` pairs them into `ContrastItem`s whose positive and negative side differ only in the
persona, which is what contrastive methods (mean_diff, PCA, weight steering...) need.

Built-in behaviours live in ``steerlab/data/behaviors/*.toml`` and are loaded with the same loader a
user's file goes through (`load_behavior_file`). Fields a file leaves out take defaults:

- ``questions`` absent: the built-in pool ``steerlab/data/questions.json`` (100+ user messages).
- ``suffixes`` absent: repeng's truncated assistant outputs from the shared data folder when present.
- ``dialogues`` absent (and ``questions`` absent): (user, assistant opening) pairs from the shared
  steering-lite branching suffixes when present. These are kept as pairs so the opening fits the message.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steerlab.paths import PACKAGE_DATA, package_data, shared_data_dir
from steerlab.textfiles import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Behavior",
    "BehaviorFileError",
    "ContrastItem",
    "PersonaPair",
    "UnknownBehaviorError",
    "builtin_questions",
    "contrast_items",
    "get_behavior",
    "list_behaviors",
    "load_behavior_file",
    "shared_dialogues",
    "shared_suffixes",
]

BEHAVIOR_DIR = PACKAGE_DATA / "behaviors"
#: Shared branching suffixes longer than this (characters) are skipped: some are whole minified files.
MAX_DIALOGUE_CHARS = 400

BEHAVIOR_SCHEMA = """\
name = "my_behavior"                  # required, str
description = "what the axis is"      # required, str
positive_label = "honest"             # required, str
negative_label = "dishonest"          # required, str
questions = ["...", "..."]            # optional, list of str, or a path to a .json list / .txt file;
                                      #   default: steerlab's built-in question pool
suffixes = ["I think", "Well,"]       # optional, list of str (assistant-response openings)
dialogues = [{user = "...", assistant = "..."}]   # optional, (user message, assistant opening) pairs
[[persona_pairs]]                     # required, one or more
positive = "Pretend you're an honest person."
negative = "Pretend you're a dishonest person."
[engineered]                          # optional, one long prompt per pole
positive = "..."
negative = "..."
[eval_axis]                           # optional hints for evals, e.g. [eval_axis.tiny-mfv] Care = -1
"""


class UnknownBehaviorError(KeyError, ValueError):
    """No built-in behaviour has this name (and it is not a behaviour file)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BehaviorFileError(ValueError):
    """A behaviour file is malformed; the message names the file, the field and the expected schema."""


@dataclass(frozen=True)
class PersonaPair:
    """One paraphrase of the two poles, used as system prompts."""

    positive: str
    negative: str


@dataclass(frozen=True)
class Behavior:
    """A named axis with a positive and a negative pole, and the text to build contrast data from."""

    name: str
    description: str
    positive_label: str
    negative_label: str
    persona_pairs: tuple[PersonaPair, ...]
    engineered: PersonaPair | None
    questions: tuple[str, ...]
    suffixes: tuple[str, ...]
    eval_axis: dict[str, Any] = field(default_factory=dict, hash=False)
    #: (user message, assistant opening) pairs that belong together (e.g. shared branching suffixes).
    dialogues: tuple[tuple[str, str], ...] = ()

    def data_hash(self) -> str:
        """Stable sha256 (12 hex chars) of all content, recorded with interventions made from it."""
        eng = self.engineered
        content = {
            "name": self.name,
            "description": self.description,
            "positive_label": self.positive_label,
            "negative_label": self.negative_label,
            "persona_pairs": [[p.positive, p.negative] for p in self.persona_pairs],
            "engineered": None if eng is None else [eng.positive, eng.negative],
            "questions": list(self.questions),
            "suffixes": list(self.suffixes),
            "dialogues": [list(d) for d in self.dialogues],
            "eval_axis": self.eval_axis,
        }
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class ContrastItem:
    """One contrast pair: identical except for the system persona. ``pair_index`` indexes
    ``behavior.persona_pairs`` (which paraphrase was used)."""

    system_pos: str
    system_neg: str
    user: str
    assistant_prefix: str
    pair_index: int

    def messages(self, pole: Literal["positive", "negative"]) -> list[dict[str, str]]:
        """Chat messages (system + user) for one pole; ``assistant_prefix`` continues the reply."""
        if pole not in ("positive", "negative"):
            raise ValueError(f"pole must be 'positive' or 'negative', got {pole!r}")
        system = self.system_pos if pole == "positive" else self.system_neg
        return [{"role": "system", "content": system}, {"role": "user", "content": self.user}]

    def prompt_row(self, pole: Literal["positive", "negative"]) -> tuple[str | None, str, str]:
        """(system, user, assistant prefix) of one pole: the persona differs, the rest is shared."""
        if pole not in ("positive", "negative"):
            raise ValueError(f"pole must be 'positive' or 'negative', got {pole!r}")
        system = self.system_pos if pole == "positive" else self.system_neg
        return system, self.user, self.assistant_prefix


# ---------------------------------------------------------------------------------------------------------
# Default pools


def builtin_questions() -> tuple[str, ...]:
    """The built-in pool of varied user messages (the project's own writing)."""
    data = json.loads(package_data("questions.json").read_text(encoding="utf-8"))
    return tuple(str(q) for q in data)


def shared_suffixes() -> tuple[str, ...]:
    """repeng's truncated assistant outputs from the shared data folder, or () when it is absent."""
    root = shared_data_dir()
    path = root / "repeng_notebook_data" / "all_truncated_outputs.json" if root else None
    if path is None or not path.is_file():
        return ()
    return tuple(str(s) for s in json.loads(path.read_text(encoding="utf-8")))


def shared_dialogues() -> tuple[tuple[str, str], ...]:
    """(user_msg, suffix) pairs from steering-lite's filtered branching suffixes, or () when absent.

    Entries longer than `MAX_DIALOGUE_CHARS` are skipped (some suffixes are whole minified source files).
    """
    root = shared_data_dir()
    path = root / "steering_lite_branching_suffixes" / "branching_suffixes_filt.json" if root else None
    if path is None or not path.is_file():
        return ()
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        user, suffix = str(item["user_msg"]), str(item["suffix"])
        if len(user) <= MAX_DIALOGUE_CHARS and len(suffix) <= MAX_DIALOGUE_CHARS:
            out.append((user, suffix))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Loading


_EXTENSIONS = (".toml", ".json", ".yaml", ".yml")
_REQUIRED = ("name", "description", "positive_label", "negative_label", "persona_pairs")
_OPTIONAL = ("engineered", "questions", "suffixes", "dialogues", "eval_axis")


def _fail(path: Path, fld: str, problem: str) -> BehaviorFileError:
    return BehaviorFileError(
        f"behaviour file {str(path)!r}: field {fld!r} {problem}.\nExpected schema (TOML; YAML/JSON use the "
        f"same keys):\n{BEHAVIOR_SCHEMA}"
    )


def _read_mapping(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    text = read_text(path, "behaviour file")
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError as err:
                raise BehaviorFileError(
                    f"behaviour file {str(path)!r} is YAML but PyYAML is not installed; "
                    "`pip install pyyaml`, or write the file as TOML or JSON"
                ) from err
            data = yaml.safe_load(text)
        else:
            raise BehaviorFileError(
                f"behaviour file {str(path)!r}: unknown extension {suffix!r}; use .toml, .json, .yaml or .yml"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise BehaviorFileError(f"behaviour file {str(path)!r} does not parse: {err}") from err
    if not isinstance(data, dict):
        raise BehaviorFileError(f"behaviour file {str(path)!r}: top level must be a mapping of fields")
    return data


def _str(path: Path, fld: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, fld, f"must be a non-empty string, got {value!r}")
    return value


def _pair(path: Path, fld: str, value: Any) -> PersonaPair:
    if not isinstance(value, Mapping):
        raise _fail(path, fld, f"must be a table with 'positive' and 'negative', got {value!r}")
    extra = set(value) - {"positive", "negative"}
    if extra:
        raise _fail(path, fld, f"has unknown keys {sorted(extra)} (only 'positive' and 'negative')")
    for key in ("positive", "negative"):
        if key not in value:
            raise _fail(path, f"{fld}.{key}", "is missing")
    return PersonaPair(
        _str(path, f"{fld}.positive", value["positive"]), _str(path, f"{fld}.negative", value["negative"])
    )


def _str_list(path: Path, fld: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # a file of strings, relative to the behaviour file
        src = (path.parent / value).expanduser()
        if not src.is_file():
            raise _fail(path, fld, f"names a file that does not exist: {str(src)!r}")
        if src.suffix.lower() == ".json":
            value = json.loads(src.read_text(encoding="utf-8"))
        else:
            value = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, fld, "must be a list of strings (or a path to a .json list / .txt file)")
    return tuple(value)


def _dialogues(path: Path, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise _fail(path, "dialogues", "must be a list of {user = ..., assistant = ...} tables")
    out = []
    for i, d in enumerate(value):
        if not isinstance(d, Mapping) or set(d) != {"user", "assistant"}:
            raise _fail(path, f"dialogues[{i}]", "must have exactly the keys 'user' and 'assistant'")
        out.append((_str(path, f"dialogues[{i}].user", d["user"]), str(d["assistant"])))
    return tuple(out)


def load_behavior_file(path: str | Path) -> Behavior:
    """Load a behaviour from TOML, JSON or YAML (YAML needs PyYAML). See `BEHAVIOR_SCHEMA`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"behaviour file {str(path)!r} does not exist")
    data = _read_mapping(path)
    known = _REQUIRED + _OPTIONAL
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(path, key, f"is not a known field{hint}")
    for key in _REQUIRED:
        if key not in data:
            raise _fail(path, key, "is missing")
    pairs_raw = data["persona_pairs"]
    if not isinstance(pairs_raw, list) or not pairs_raw:
        raise _fail(path, "persona_pairs", "must be a non-empty list of {positive, negative} tables")
    pairs = tuple(_pair(path, f"persona_pairs[{i}]", p) for i, p in enumerate(pairs_raw))
    engineered = _pair(path, "engineered", data["engineered"]) if "engineered" in data else None
    if "questions" in data:
        questions = _str_list(path, "questions", data["questions"])
        default_dialogues: tuple[tuple[str, str], ...] = ()
    else:
        questions = builtin_questions()
        default_dialogues = shared_dialogues()
    suffixes = _str_list(path, "suffixes", data["suffixes"]) if "suffixes" in data else shared_suffixes()
    dialogues = _dialogues(path, data["dialogues"]) if "dialogues" in data else default_dialogues
    eval_axis = data.get("eval_axis", {})
    if not isinstance(eval_axis, Mapping):
        raise _fail(path, "eval_axis", "must be a table (eval name -> hints)")
    return Behavior(
        name=_str(path, "name", data["name"]),
        description=_str(path, "description", data["description"]),
        positive_label=_str(path, "positive_label", data["positive_label"]),
        negative_label=_str(path, "negative_label", data["negative_label"]),
        persona_pairs=pairs,
        engineered=engineered,
        questions=questions,
        suffixes=suffixes,
        eval_axis=dict(eval_axis),
        dialogues=dialogues,
    )


def _builtin_files() -> list[Path]:
    return sorted(BEHAVIOR_DIR.glob("*.toml"))


def list_behaviors() -> list[Behavior]:
    """All built-in behaviours, sorted by name."""
    return sorted((load_behavior_file(p) for p in _builtin_files()), key=lambda b: b.name)


def get_behavior(name_or_path: str | Path | Behavior) -> Behavior:
    """A built-in behaviour by name, a behaviour file by path, or a `Behavior` passed through."""
    if isinstance(name_or_path, Behavior):
        return name_or_path
    if isinstance(name_or_path, Path) or Path(name_or_path).suffix.lower() in _EXTENSIONS:
        return load_behavior_file(name_or_path)
    for p in _builtin_files():
        if p.stem == name_or_path:
            return load_behavior_file(p)
    known = [p.stem for p in _builtin_files()]
    raise UnknownBehaviorError(
        f"unknown behaviour {name_or_path!r}; built-in behaviours are {known} (or pass a .toml/.json/.yaml file)"
    )


# ---------------------------------------------------------------------------------------------------------
# Contrast items


def contrast_items(
    behavior: Behavior | str | Path,
    n: int | None = None,
    seed: int = 0,
    use_suffixes: bool = True,
) -> list[ContrastItem]:
    """Deterministic contrast pairs for a behaviour.

    The pool is every question (each given a random suffix as assistant prefix when ``use_suffixes`` and
    the behaviour has suffixes, else an empty prefix) plus, when ``use_suffixes``, every dialogue
    (user message with its own assistant opening). The pool is shuffled under ``seed`` and persona
    paraphrases are assigned round-robin so they are balanced. ``n=None`` returns the whole pool; a
    larger ``n`` cycles through it again (with fresh suffixes and personas).
    """
    b = get_behavior(behavior)
    if not b.questions:
        raise ValueError(
            f"behaviour {b.name!r} has no questions; give it a 'questions' list in its file to build contrast data"
        )
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"{seed}:{b.data_hash()}")
    suffixes = b.suffixes if use_suffixes else ()
    dialogues = b.dialogues if use_suffixes else ()
    templates: list[tuple[str, str | None]] = [(q, None) for q in b.questions]
    templates += [(u, a) for u, a in dialogues]
    total = len(templates) if n is None else n
    n_pairs = len(b.persona_pairs)
    items: list[ContrastItem] = []
    offset = rng.randrange(n_pairs)
    while len(items) < total:
        order = list(range(len(templates)))
        rng.shuffle(order)
        for i in order[: total - len(items)]:
            user, prefix = templates[i]
            if prefix is None:
                prefix = rng.choice(suffixes) if suffixes else ""
            pair_index = (offset + len(items)) % n_pairs
            pair = b.persona_pairs[pair_index]
            items.append(ContrastItem(pair.positive, pair.negative, user, prefix, pair_index))
    return items
