"""Android host settings: one pydantic-settings class (prefix ``LATENCYLAB_ANDROID_``).

The adb executable is also read from ``LATENCYLAB_ADB`` (tests point it at the stand-in
``tests/fakes/adb``). Coordinator URL, token, heartbeat and poll intervals of the
per-phone agents come from :class:`agents.config.AgentSettings` (``LATENCYLAB_AGENT_``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BENCHMARK_MODEL_HINT = (
    "download the Android arm64 build of TFLite's benchmark_model (for example "
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
    "tools/nightly/latest/android_aarch64_benchmark_model) and set "
    "LATENCYLAB_ANDROID_BENCHMARK_MODEL (or --benchmark-model) to its path"
)


class AndroidSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LATENCYLAB_ANDROID_", extra="ignore", populate_by_name=True
    )

    adb: str = Field(
        "adb",
        validation_alias=AliasChoices("LATENCYLAB_ADB", "LATENCYLAB_ANDROID_ADB"),
        description="The adb executable (a path, or a name on PATH)",
    )
    benchmark_model: Path | None = Field(
        None,
        description="Local benchmark_model binary pushed once to each phone; unset = it "
        "must already be at <remote_dir>/benchmark_model on the phone",
    )
    benchmark_model_version: str = Field(
        "benchmark_model", description="Version label registered as the 'tflite' runtime"
    )
    executor_runner: Path | None = Field(
        None,
        description="Local ExecuTorch executor_runner binary (Android arm64, XNNPACK linked) "
        "pushed once to each phone; unset = the phones do not offer runtime 'executorch'",
    )
    executor_runner_profiler: Path | None = Field(
        None,
        description="Local executor_runner built with EXECUTORCH_ENABLE_EVENT_TRACER=ON (it takes "
        "--etdump_path), pushed once per phone and run only for the op-profiling pass (the tracer "
        "adds overhead, so the timed passes use executor_runner); unset = no op profile on phones",
    )
    executor_runner_version: str = Field(
        "executor_runner", description="Version label registered as the 'executorch' runtime"
    )
    remote_dir: str = Field("/data/local/tmp", description="Where files go on the phone")
    cpu_mask: str | None = Field(
        None, description="taskset mask (hex, e.g. 'f0'); unset = the big cores, 'all' = none"
    )
    cooldown_s: float = Field(0.0, ge=0, description="Fixed wait before each benchmark pass")
    cooldown_max_temp_c: float | None = Field(
        45.0, description="Wait until the hottest CPU/SoC zone is below this (None = no wait)"
    )
    cooldown_timeout_s: float = Field(120.0, ge=0, description="Give up waiting after this")
    cooldown_poll_s: float = Field(2.0, gt=0, description="Thermal poll interval")
    adb_timeout_s: float = Field(30.0, gt=0, description="Timeout of short adb commands")
    push_timeout_s: float = Field(300.0, gt=0, description="Timeout of one adb push")
    profile_runs: int = Field(20, ge=1, description="Runs of the op-profiling pass")
    poll_interval_s: float = Field(2.0, gt=0, description="How often 'adb devices' is polled")
    # energy per inference from the battery fuel gauge (agents.android.energy)
    energy: bool = Field(
        True,
        description="Sample the battery (current_now x voltage_now) around the steady pass, "
        "USB charging suspended ('dumpsys battery unplug' + 'suspend_input', 'reset' after)",
    )
    energy_interval_s: float = Field(
        0.2, ge=0.05, le=2.0, description="Battery sampling interval on the phone"
    )
    energy_baseline_s: float = Field(
        3.0, gt=0, le=60, description="Idle sampling before the pass (the baseline subtracted)"
    )
    energy_min_updates: int = Field(
        5, ge=1, description="Fewest fuel-gauge updates in the steady state to report energy"
    )
    battery_dir: str = Field(
        "/sys/class/power_supply/battery", description="The phone's fuel-gauge sysfs directory"
    )
    battery_current_sign: Literal["auto", "negative_discharge", "positive_discharge"] = Field(
        "auto", description="Sign of current_now while discharging (auto: detected)"
    )
    battery_current_unit: Literal["auto", "uA", "mA"] = Field(
        "auto", description="Unit of current_now (auto: detected from the idle reading)"
    )
