"""LoadConfig / DeploymentConfig: defaults from LoadGen, and one ConfigError naming the field for bad input."""

from __future__ import annotations

import pytest

from mlperf_track.engine.load.config import SCENARIOS, DeploymentConfig, LoadConfig
from mlperf_track.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"scenario": "server", "target_qps": 0.0, "latency_bound_ms": 10.0}, "target_qps"),
        ({"scenario": "server", "target_qps": -3.0, "latency_bound_ms": 10.0}, "target_qps"),
        ({"scenario": "server", "target_qps": 5.0, "latency_bound_ms": 0.0}, "latency_bound_ms"),
        ({"scenario": "server", "target_qps": 5.0, "latency_bound_ms": -1.0}, "latency_bound_ms"),
        ({"scenario": "server", "latency_bound_ms": 10.0}, "target_qps"),
        ({"scenario": "server", "target_qps": 5.0}, "latency_bound_ms"),
        ({"scenario": "serverless"}, "scenario"),
        ({"scenario": "concurrency", "concurrency": 0}, "concurrency"),
        ({"scenario": "multi_stream", "samples_per_query": 0}, "samples_per_query"),
        ({"min_duration_s": -1.0}, "min_duration_s"),
        ({"min_duration_s": 5.0, "max_duration_s": 1.0}, "max_duration_s"),
        ({"percentile": 1.0}, "percentile"),
        ({"percentile": 0.0}, "percentile"),
        ({"confidence": 1.5}, "confidence"),
        ({"seed": -1}, "seed"),
        ({"max_queries": 0}, "max_queries"),
    ],
)
def test_bad_load_config_names_the_field(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as error:
        LoadConfig(**kwargs)  # type: ignore[arg-type]
    assert error.value.parameter == parameter
    assert "\n" not in str(error.value)


def test_unknown_scenario_lists_the_scenarios_and_suggests_one() -> None:
    with pytest.raises(ConfigError) as error:
        LoadConfig(scenario="single-stream")
    assert "single_stream" in str(error.value)
    for scenario in SCENARIOS:
        assert scenario in error.value.allowed


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"workers": 0}, "workers"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_queue_delay_ms": -0.5}, "max_queue_delay_ms"),
        ({"max_queue_delay_ms": float("inf")}, "max_queue_delay_ms"),
        ({"max_queue_size": 0}, "max_queue_size"),
    ],
)
def test_bad_deployment_names_the_field(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as error:
        DeploymentConfig(**kwargs)  # type: ignore[arg-type]
    assert error.value.parameter == parameter


def test_loadgen_percentiles_and_early_stopping_minimums() -> None:
    assert LoadConfig("single_stream").target_percentile == 0.90
    assert LoadConfig("multi_stream").target_percentile == 0.99
    assert LoadConfig("server", target_qps=1.0, latency_bound_ms=1.0).target_percentile == 0.99
    # The fewest queries with which early stopping can pass (MLPerf: 64 SingleStream, 662 MultiStream).
    assert LoadConfig("single_stream").resolved_min_queries() == 64
    assert LoadConfig("multi_stream").resolved_min_queries() == 662
    assert LoadConfig("server", target_qps=1.0, latency_bound_ms=1.0).resolved_min_queries() == 459
    # A minimum below the early-stopping floor cannot make a run VALID, so it is raised to the floor...
    assert LoadConfig("single_stream", min_query_count=7).resolved_min_queries() == 64
    assert LoadConfig("single_stream", min_query_count=700).resolved_min_queries() == 700
    # ...unless early stopping is off (LoadGen's use_early_stopping=false).
    assert LoadConfig("single_stream", min_query_count=7, early_stopping=False).resolved_min_queries() == 7
    assert LoadConfig("offline").resolved_min_queries() == 1024


def test_params_are_strings_with_prefixes() -> None:
    config = LoadConfig("server", target_qps=12.5, latency_bound_ms=40.0)
    params = {**config.params(), **DeploymentConfig(workers=2, max_batch_size=8).params()}
    assert params["load.scenario"] == "server"
    assert params["load.target_qps"] == "12.5"
    assert params["deploy.workers"] == "2"
    assert params["deploy.max_queue_size"] == "unbounded"
    assert "load.percentile" not in params  # unset values are left out
    assert all(isinstance(value, str) for value in params.values())
