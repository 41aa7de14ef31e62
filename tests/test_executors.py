"""The executor plug-in kind without Ray: registry, options, config keys, CLI flags, the parallel display."""

from __future__ import annotations

import argparse
import io

import pytest

from steerlab.bench import ConfigError, parse_config
from steerlab.bench.config import dump_toml
from steerlab.bench.plan import build_plan
from steerlab.bench.progress import Progress
from steerlab.commands.scale_flags import add_scale_out_flags, apply_scale_out_flags
from steerlab.executors import EXECUTORS, make_executor
from steerlab.executors.local import LocalExecutor
from steerlab.executors.ray import RayExecutor
from steerlab.registry import UnknownNameError

BASE = 'methods = ["mean_diff"]\nevals = ["off-task"]\n'


def test_executors_are_registered_and_unknown_names_suggest():
    assert EXECUTORS.names() == ["local", "ray"]
    assert isinstance(make_executor("local"), LocalExecutor)
    ray = make_executor("ray", {"workers": 2, "max_retries": 1, "resources": {"extract": {"num_gpus": 1}}})
    assert isinstance(ray, RayExecutor) and ray.options.workers == 2
    with pytest.raises(UnknownNameError, match="did you mean 'ray'"):
        make_executor("rya")
    with pytest.raises(ValueError, match="no option 'worker'"):
        make_executor("ray", {"worker": 2})
    with pytest.raises(ValueError, match="resources.train: unknown unit kind"):
        make_executor("ray", {"resources": {"train": {"num_gpus": 1}}})
    with pytest.raises(ValueError, match="max_retries must be >= 0"):
        make_executor("ray", {"max_retries": -1})


def test_config_keys_round_trip_and_only_placement_changes_unit_keys():
    text = 'executor = "ray"\ndevice_map = "auto"\n' + BASE + "[executor_options]\nworkers = 2\n"
    config = parse_config(text, "x.toml")
    assert (
        config.executor == "ray" and config.executor_options == {"workers": 2} and config.device_map == "auto"
    )
    again = parse_config(dump_toml(config.as_dict()), "again.toml")
    assert again.as_dict() == config.as_dict()
    plain = {u.name for u in build_plan(parse_config(BASE, "a.toml"))}
    on_ray = {u.name for u in build_plan(parse_config('executor = "ray"\n' + BASE, "b.toml"))}
    sharded = {u.name for u in build_plan(parse_config('device_map = "auto"\n' + BASE, "c.toml"))}
    assert plain == on_ray and not plain & sharded  # switching executors never reruns a unit
    assert "executor" not in parse_config(BASE, "a.toml").as_dict()
    with pytest.raises(ConfigError, match="x.toml:1: 'quantization' must be one of"):
        parse_config('quantization = "2bit"\n' + BASE, "x.toml")


def test_cli_flags_override_the_config():
    parser = argparse.ArgumentParser()
    add_scale_out_flags(parser)
    config = parse_config(BASE, "a.toml")
    args = parser.parse_args(["--ray-address", "10.0.0.1:6379", "--device-map", '{"": 0}', "--dtype", "bf16"])
    apply_scale_out_flags(config, args)
    assert config.executor == "ray" and config.executor_options["address"] == "10.0.0.1:6379"
    assert config.device_map == {"": 0} and config.dtype == "bf16"
    explicit = parse_config(BASE, "a.toml")
    apply_scale_out_flags(explicit, parser.parse_args(["--executor", "local"]))
    assert explicit.executor == "local"


def test_progress_shows_several_running_units_and_divides_the_eta():
    plan = build_plan(parse_config(BASE, "a.toml"))
    stream = io.StringIO()
    progress = Progress(plan, stream=stream)
    one = progress.eta()
    progress.parallel = 2
    assert progress.eta() == pytest.approx(one / 2, rel=0.05)
    progress.start(plan[0])
    progress.start(plan[1])
    assert "2 running:" in progress.status()
    progress.requeue(plan[1], "worker died")
    assert progress.current is plan[0] and progress.done == 0
    progress.finish(plan[0], 1.0)
    assert progress.done == 1 and progress.current is None


@pytest.mark.parametrize(
    ("workers", "request_", "cluster", "expected"),
    [
        (None, {"num_cpus": 1.0}, {"CPU": 2.0}, 2),  # as many as fit
        (1, {"num_cpus": 1.0}, {"CPU": 2.0}, 1),  # a cap below the room
        (2, {"num_cpus": 1.0, "num_gpus": 1.0}, {"CPU": 16.0, "GPU": 1.0}, 1),  # never more than fit
        (2, {"num_cpus": 1.0, "num_gpus": 0.5}, {"CPU": 16.0, "GPU": 1.0}, 2),  # two share one GPU
        (3, {"num_gpus": 1.0}, {"CPU": 4.0}, 1),  # nothing fits: one, which Ray reports as unplaceable
    ],
)
def test_ray_workers_is_a_cap_on_what_the_cluster_fits(workers, request_, cluster, expected):
    from steerlab.executors.ray import RayOptions, _profile, _Scheduler

    scheduler = object.__new__(_Scheduler)  # the limit needs only the options and the cluster's resources
    scheduler.options, scheduler.cluster = RayOptions(workers=workers), cluster
    assert scheduler.limit(_profile(request_)) == expected
