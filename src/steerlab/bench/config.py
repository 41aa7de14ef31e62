"""The bench config: a TOML file (or a built-in preset) read into dataclasses, with errors that point at
the config line and list the valid names.

Reading and checking the file's shape needs no torch; `validate_names` checks method, eval and behaviour
names against the registries (which import the model stack) and is called before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from steerlab.bench.coefficients_config import POLICIES, coefficients_dict, parse_coefficients
from steerlab.bench.config_errors import (
    ConfigError,
    choices_text,
    config_error,
    line_in_table,
)
from steerlab.bench.scale_config import SCALE_OUT_KEYS, parse_scale_out, scale_out_dict
from steerlab.bench.toml_io import dump_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "POLICIES",
    "PRESETS",
    "BenchConfig",
    "ConfigError",
    "NullBand",
    "Selection",
    "dump_toml",
    "load_config",
    "load_preset",
    "parse_config",
]

PRESETS = ("quick", "full", "weight-steering", "trad-care", "authority", "unsupervised")


@dataclass
class NullBand:
    """Methods whose several vectors form the random-control band; each vector is calibrated and evaluated."""

    methods: list[str] = field(default_factory=lambda: ["random"])
    n_vectors: int | dict[str, int] = 4  # one count for every null method, or method -> count

    def count(self, method: str) -> int:
        """How many vectors of `method`'s bank are calibrated and evaluated."""
        if isinstance(self.n_vectors, dict):
            return int(self.n_vectors.get(method, 4))
        return int(self.n_vectors)


@dataclass
class Selection:
    """How one vector is chosen from a bank (melbo, power_iter): the eval and rows that score candidates,
    disjoint from the reported rows (sycophancy-claims ``train`` vs the reported ``heldout``)."""

    methods: list[str] = field(default_factory=lambda: ["melbo", "power_iter"])
    eval: str = "sycophancy-claims"
    options: dict[str, Any] = field(default_factory=lambda: {"split": "train"})
    coeff: float = 1.0


@dataclass
class BenchConfig:
    """Everything a bench run depends on. ``method_options`` / ``eval_options`` map a name to its options."""

    model: str = "smollm2-135m"
    behavior: str = "honesty"
    methods: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    evals: list[str] = field(default_factory=list)
    headline_eval: str | None = None
    device: str | None = None
    dtype: str | None = None
    policy: str = "calibrated"
    coefficients: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0])
    targets: list[float] = field(default_factory=list)  # kl-ladder: the KL levels, nats
    fractions: list[float] = field(default_factory=list)  # extra coefficients: fractions of the iso-KL |c|
    extra_coefficients: list[float] = field(default_factory=list)  # fixed |c| beside the calibrated one
    calibration: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    null: NullBand = field(default_factory=NullBand)
    selection: Selection = field(default_factory=Selection)
    sweep: Any = None  # steerlab.sweeps.config.SweepSection from a [sweep] table
    ablate: Any = None  # steerlab.analysis.bench.AblateSection from an [ablate] table
    n_boot: int = 1000
    device_map: str | dict[str, Any] | None = None
    quantization: str | None = None
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(
        default_factory=dict
    )  # declared report tables (see steerlab.report_preset)
    source: str = "<config>"
    text: str = ""

    @property
    def headline(self) -> str:
        """The eval of the headline table: ``headline_eval``, else the first eval whose report declaration
        allows a headline (a collateral-damage suite does not)."""
        if self.headline_eval:
            return self.headline_eval
        from steerlab.evals import EVALS

        eligible = (e for e in self.evals if e not in EVALS or EVALS.get(e).report.headline)
        return next(eligible, self.evals[0])

    def as_dict(self) -> dict[str, Any]:
        """The config as TOML-able data (what OUT/config.toml holds)."""
        data = {
            "model": self.model,
            "behavior": self.behavior,
            "methods": list(self.methods),
            "seeds": list(self.seeds),
            "evals": list(self.evals),
            "headline_eval": self.headline,
            "n_boot": self.n_boot,
        }
        if self.device:
            data["device"] = self.device
        if self.dtype:
            data["dtype"] = self.dtype
        data.update(scale_out_dict(self))
        data["coefficients"] = coefficients_dict(self)
        data["calibration"] = dict(self.calibration)
        data["null"] = dataclasses.asdict(self.null)
        data["selection"] = dataclasses.asdict(self.selection)
        if self.report:
            data["report"] = copy.deepcopy(self.report)
        data["method_options"] = copy.deepcopy(self.method_options)
        data["eval_options"] = copy.deepcopy(self.eval_options)
        if self.sweep is not None:
            data["sweep"] = {k: v for k, v in dataclasses.asdict(self.sweep).items() if v is not None}
        if self.ablate is not None:
            data["ablate"] = dataclasses.asdict(self.ablate)
        return data


# ---------------------------------------------------------------------------------------------- parsing

_TOP_KEYS = {
    "model": str,
    "behavior": str,
    "methods": list,
    "seeds": list,
    "evals": list,
    "headline_eval": str,
    "device": str,
    "dtype": str,
    "n_boot": int,
    "coefficients": dict,
    "calibration": dict,
    "method_options": dict,
    "eval_options": dict,
    "null": dict,
    "selection": dict,
    **SCALE_OUT_KEYS,
    "sweep": dict,
    "ablate": dict,
    "report": dict,
}
_TYPE_WORDS = {str: "a string", list: "a list", int: "an integer", dict: "a table"}


def _check_type(config: BenchConfig, key: str, value: Any, expected: type, needle: str) -> None:
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise config_error(config, f"{key!r} must be {_TYPE_WORDS[expected]}, got {value!r}", needle)


def _typed(
    config: BenchConfig, cls: type, key: str, raw: Any, table: str, line: int | None, promote: bool = True
) -> Any:
    """`raw` parsed to the type `cls.key` declares; a mismatch is a ConfigError at ``file:line``."""
    from steerlab.options import OptionError, coerce_option

    where = f"{config.source}:{line}" if line else config.source
    try:
        return coerce_option(cls, key, raw, f"{where}: [{table}] {key}", promote=promote)
    except OptionError as error:
        raise ConfigError(str(error)) from None


def _check_options(config: BenchConfig, table: str, options: dict[str, Any], cls: type, build: Any) -> None:
    """Unknown keys point at their own line; each value is parsed to its declared type in place (a wrong
    type points at its line); values the config class rejects point at the table."""
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in valid:
            line = line_in_table(config.text, table, key)
            raise config_error(
                config, f"[{table}] has no option {key!r}{choices_text(key, valid)}", line=line
            )
    for key, raw in list(options.items()):
        options[key] = _typed(config, cls, key, raw, table, line_in_table(config.text, table, key))
    try:
        build(dict(options))
    except (TypeError, ValueError) as error:
        raise config_error(config, f"[{table}]: {error}", line=line_in_table(config.text, table)) from None


def _sub_table(config: BenchConfig, name: str, data: dict[str, Any], cls: type) -> Any:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise config_error(config, f"[{name}] has no key {key!r}{choices_text(key, valid)}", key)
    typed = {
        key: _typed(config, cls, key, raw, name, line_in_table(config.text, name, key), promote=False)
        for key, raw in data.items()
    }
    return cls(**typed)


def parse_config(text: str, source: str = "<config>") -> BenchConfig:
    """Read a bench config from TOML text; shape errors name the line."""
    config = BenchConfig(source=source, text=text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML ({error})") from error
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise config_error(config, f"unknown key {key!r}{choices_text(key, sorted(_TOP_KEYS))}", key)
        _check_type(config, key, value, _TOP_KEYS[key], key)
    parse_scale_out(config, data, config_error)
    for key in ("model", "behavior", "headline_eval", "device", "dtype", "n_boot"):
        if key in data:
            setattr(config, key, data[key])
    for key in ("methods", "evals"):
        values = data.get(key, [])
        if not values or not all(isinstance(v, str) for v in values):
            raise config_error(config, f"{key!r} must be a non-empty list of names, got {values!r}", key)
        if len(set(values)) != len(values):
            raise config_error(config, f"{key!r} lists a name twice: {values!r}", key)
        setattr(config, key, list(values))
    seeds = data.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise config_error(config, f"'seeds' must be a non-empty list of integers, got {seeds!r}", "seeds")
    config.seeds = list(dict.fromkeys(seeds))
    parse_coefficients(config, data.get("coefficients", {}))
    config.calibration = dict(data.get("calibration", {}))
    for key in ("method_options", "eval_options"):
        for name, options in data.get(key, {}).items():
            if not isinstance(options, dict):
                raise config_error(
                    config, f"[{key}.{name}] must be a table of options, got {options!r}", name
                )
        setattr(config, key, {name: dict(options) for name, options in data.get(key, {}).items()})
    config.null = _sub_table(config, "null", data.get("null", {}), NullBand)
    config.selection = _sub_table(config, "selection", data.get("selection", {}), Selection)
    counts = (
        config.null.n_vectors.values() if isinstance(config.null.n_vectors, dict) else [config.null.n_vectors]
    )
    if not all(isinstance(n, int) and n >= 1 for n in counts):
        raise config_error(config, f"[null] n_vectors must be >= 1, got {config.null.n_vectors}", "n_vectors")
    config.report = dict(data.get("report", {}))
    if config.n_boot < 100:
        raise config_error(config, f"n_boot must be >= 100, got {config.n_boot}", "n_boot")
    if "sweep" in data:
        _parse_sweep(config, data["sweep"])
    if "ablate" in data:
        from steerlab.analysis.bench import AblateSection

        config.ablate = _sub_table(config, "ablate", data["ablate"], AblateSection)
        try:
            config.ablate.check()
        except ValueError as error:
            raise config_error(config, str(error), "[ablate]") from None
    _check_cross_references(config)
    return config


def _parse_sweep(config: BenchConfig, table: dict[str, Any]) -> None:
    from steerlab.sweeps.config import SweepSection

    config.sweep = _sub_table(config, "sweep", table, SweepSection)
    try:
        config.sweep.check(config.methods)
    except ValueError as error:
        raise config_error(config, str(error), "[sweep]") from None


def _check_cross_references(config: BenchConfig) -> None:
    if config.headline_eval and config.headline_eval not in config.evals:
        raise config_error(
            config,
            f"headline_eval {config.headline_eval!r} is not one of the config's evals {config.evals}",
            "headline_eval",
        )
    for key, names in (("method_options", config.methods), ("eval_options", config.evals)):
        for name in getattr(config, key):
            if name not in names:
                raise config_error(
                    config, f"[{key}.{name}] is for {name!r}, which the config does not run ({names})", name
                )


def validate_names(config: BenchConfig) -> None:
    """Check method, eval, behaviour and option names against the registries (imports the model stack)."""
    from steerlab.behaviors import UnknownBehaviorError, get_behavior
    from steerlab.calibrate import CalibrationConfig
    from steerlab.evals import get_eval, list_evals, make_eval_config
    from steerlab.methods import get_method, list_methods
    from steerlab.methods.registry import make_config

    methods = sorted(spec.name for spec in list_methods())
    evals = [spec.name for spec in list_evals()]
    for name in config.methods:
        if name not in methods:
            raise config_error(config, f"unknown method {name!r}{choices_text(name, methods)}", f'"{name}"')
    for name in config.evals + [config.selection.eval] + ([config.sweep.eval] if config.sweep else []):
        if name not in evals:
            raise config_error(config, f"unknown eval {name!r}{choices_text(name, evals)}", f'"{name}"')
    try:
        get_behavior(config.behavior)
    except (UnknownBehaviorError, FileNotFoundError) as error:
        raise config_error(config, str(error), "behavior") from None
    for name, options in config.method_options.items():
        spec = get_method(name)
        _check_options(
            config, f"method_options.{name}", options, spec.config_cls, lambda o, s=spec: make_config(s, o)
        )
    for name, options in config.eval_options.items():
        eval_spec = get_eval(name)
        _check_options(
            config,
            f"eval_options.{name}",
            options,
            eval_spec.config_cls,
            lambda o, s=eval_spec: make_eval_config(s, o),
        )
    _check_options(
        config, "calibration", config.calibration, CalibrationConfig, lambda o: CalibrationConfig(**o)
    )


# ---------------------------------------------------------------------------------------------- files


def load_config(path: str | Path) -> BenchConfig:
    """Read a bench config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bench config {str(path)!r} does not exist")
    from steerlab.textfiles import FileReadError, read_text

    try:
        text = read_text(path, "bench config")
    except FileReadError as error:
        raise ConfigError(str(error)) from None
    return parse_config(text, source=str(path))


def load_preset(name: str) -> BenchConfig:
    """A built-in preset (``quick`` or ``full``) from ``steerlab/bench/presets``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    text = resources.files("steerlab.bench").joinpath("presets", f"{name}.toml").read_text(encoding="utf-8")
    return parse_config(text, source=f"preset {name!r}")
