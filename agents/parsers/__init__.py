"""Parsers for real device/tool output (tegrastats, trtexec, TFLite benchmark_model,
adb, nvidia-smi, nvpmodel, thermal).  Pure stdlib; every parser raises ``ValueError``
quoting the offending line when input cannot be read.
"""

from agents.parsers.adb import (
    AdbDevice,
    PhoneInfo,
    parse_adb_devices,
    parse_getprop,
    parse_getprop_reply,
    phone_info,
)
from agents.parsers.nvidia_smi import canonical_field, parse_query_gpu
from agents.parsers.nvpmodel import NvpModelStatus, parse_nvpmodel_query
from agents.parsers.tegrastats import (
    TegrastatsSample,
    energy_per_inference_mj,
    parse_tegrastats,
    parse_tegrastats_line,
    summarize_power,
)
from agents.parsers.tflite_benchmark import TfliteBenchmarkResult, parse_tflite_benchmark
from agents.parsers.thermal import (
    ThermalReading,
    ThermalServiceDump,
    parse_dumpsys_thermalservice,
    parse_thermal_zone_types,
)
from agents.parsers.trtexec import (
    TrtexecResult,
    parse_export_profile,
    parse_export_times,
    parse_trtexec_log,
)

__all__ = [
    "AdbDevice",
    "NvpModelStatus",
    "PhoneInfo",
    "TegrastatsSample",
    "TfliteBenchmarkResult",
    "ThermalReading",
    "ThermalServiceDump",
    "TrtexecResult",
    "canonical_field",
    "energy_per_inference_mj",
    "parse_adb_devices",
    "parse_dumpsys_thermalservice",
    "parse_export_profile",
    "parse_export_times",
    "parse_getprop",
    "parse_getprop_reply",
    "parse_nvpmodel_query",
    "parse_query_gpu",
    "parse_tegrastats",
    "parse_tegrastats_line",
    "parse_tflite_benchmark",
    "parse_thermal_zone_types",
    "parse_trtexec_log",
    "phone_info",
    "summarize_power",
]
