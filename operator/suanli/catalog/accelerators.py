"""The accelerator catalog: public figures for the chips Chinese compute centers run.

Figures are *dense* peak TFLOPS (TOPS for int8) per precision, board power in watts and
on-board memory in GiB. A precision a chip has no native support for is absent: a job
asking for it is not placed on that chip (the rejection says so). Each entry names its
public source; `confirmed=False` marks figures that vendors have not published in a
datasheet (press, vendor talks or third-party measurements), which a pool should
override with its own numbers where it knows better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

AcceleratorType = Literal["GPU", "NPU", "DCU", "MLU"]
Precision = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "int8"]

ACCELERATOR_TYPES: Final[tuple[AcceleratorType, ...]] = ("GPU", "NPU", "DCU", "MLU")
PRECISIONS: Final[tuple[Precision, ...]] = ("fp64", "fp32", "tf32", "bf16", "fp16", "int8")


@dataclasses.dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model as the catalog knows it."""

    name: str
    type: AcceleratorType
    vendor: str
    memory_gib: float
    board_watts: float
    peak_tflops: Mapping[str, float]
    source: str
    confirmed: bool = True


def _acc(
    name: str,
    type_: AcceleratorType,
    vendor: str,
    memory_gib: float,
    watts: float,
    source: str,
    confirmed: bool = True,
    **tflops: float,
) -> Accelerator:
    return Accelerator(
        name=name,
        type=type_,
        vendor=vendor,
        memory_gib=memory_gib,
        board_watts=watts,
        peak_tflops=MappingProxyType(dict(tflops)),
        source=source,
        confirmed=confirmed,
    )


_ENTRIES: Final[tuple[Accelerator, ...]] = (
    # NVIDIA A100 SXM4 80GB datasheet (2021): FP64 9.7 (19.5 tensor), FP32 19.5, TF32 156,
    # BF16/FP16 312, INT8 624 dense; 400 W.
    _acc("A100", "GPU", "NVIDIA", 80, 400, "NVIDIA A100 datasheet", fp64=19.5, fp32=19.5, tf32=156,
         bf16=312, fp16=312, int8=624),
    # NVIDIA H100 SXM5 datasheet (2023): FP64 tensor 67, FP32 67, TF32 494.5, BF16/FP16 989.5,
    # INT8 1979 dense (the datasheet's headline numbers are with sparsity, twice these); 700 W.
    _acc("H100", "GPU", "NVIDIA", 80, 700, "NVIDIA H100 datasheet", fp64=67, fp32=67, tf32=494.5,
         bf16=989.5, fp16=989.5, int8=1979),
    # NVIDIA H800 SXM5 product brief: H100 compute with FP64 cut to 1 TFLOPS and reduced NVLink; 700 W.
    _acc("H800", "GPU", "NVIDIA", 80, 700, "NVIDIA H800 product brief", fp64=1, fp32=67, tf32=494.5,
         bf16=989.5, fp16=989.5, int8=1979),
    # NVIDIA H20: no public datasheet; widely reported figures (FP32 44, TF32 74, BF16/FP16 148,
    # INT8 296, FP64 1, 96 GB HBM3, 400 W).
    _acc("H20", "GPU", "NVIDIA", 96, 400, "press reports (SemiAnalysis, 2023-11)", confirmed=False,
         fp64=1, fp32=44, tf32=74, bf16=148, fp16=148, int8=296),
    # NVIDIA V100 SXM2 32GB datasheet: FP64 7.8, FP32 15.7, FP16 tensor 125; no BF16/TF32;
    # INT8 62 TOPS (DP4A); 300 W.
    _acc("V100", "GPU", "NVIDIA", 32, 300, "NVIDIA V100 datasheet", fp64=7.8, fp32=15.7, fp16=125,
         int8=62),
    # NVIDIA P100 SXM2 datasheet: FP64 5.3, FP32 10.6, FP16 21.2; 300 W, 16 GB.
    _acc("P100", "GPU", "NVIDIA", 16, 300, "NVIDIA P100 datasheet", fp64=5.3, fp32=10.6, fp16=21.2),
    # NVIDIA T4 datasheet: FP32 8.1, FP16 65 (mixed), INT8 130; 70 W, 16 GB.
    _acc("T4", "GPU", "NVIDIA", 16, 70, "NVIDIA T4 datasheet", fp64=0.25, fp32=8.1, fp16=65, int8=130),
    # NVIDIA A10 datasheet: FP32 31.2, TF32 62.5, BF16/FP16 125, INT8 250; 150 W, 24 GB.
    _acc("A10", "GPU", "NVIDIA", 24, 150, "NVIDIA A10 datasheet", fp64=0.98, fp32=31.2, tf32=62.5,
         bf16=125, fp16=125, int8=250),
    # Huawei Ascend 910 (Atlas 300T training card / Ascend 910 whitepaper 2019): FP16 256,
    # INT8 512; 310 W max; 32 GB HBM2. No published FP32 or BF16 peak.
    _acc("Ascend910", "NPU", "Huawei", 32, 310, "Huawei Ascend 910 launch (2019-08)", fp16=256,
         int8=512),
    # Huawei Ascend 910B: no public datasheet; vendor talks and press give about 320 TFLOPS
    # FP16/BF16, 640 TOPS INT8, 64 GB HBM2e, about 400 W.
    _acc("Ascend910B", "NPU", "Huawei", 64, 400, "vendor talks and press (2023)", confirmed=False,
         fp32=80, bf16=320, fp16=320, int8=640),
    # Huawei Atlas 300I Pro (Ascend 310P) datasheet: 140 TOPS INT8, 70 TFLOPS FP16, 72 W, 24 GB.
    _acc("Ascend310P", "NPU", "Huawei", 24, 72, "Huawei Atlas 300I Pro datasheet", fp16=70, int8=140),
    # Hygon DCU Z100 (Shensuan-1): public figures are sparse; about 10 TFLOPS FP64, 32 GB HBM2,
    # about 300 W; FP32/FP16 from third-party reports.
    _acc("Z100", "DCU", "Hygon", 32, 300, "third-party reports (2022)", confirmed=False, fp64=10.1,
         fp32=20.2, fp16=80, int8=160),
    # Hygon DCU K100 (Shensuan-2): reported about 100 TFLOPS FP16/BF16, 64 GB, about 350 W.
    _acc("K100", "DCU", "Hygon", 64, 350, "press reports (2023)", confirmed=False, fp64=24.5,
         fp32=49, bf16=100, fp16=100, int8=200),
    # Cambricon MLU370-X8 product page: FP32 24, FP16/BF16 96, INT8 256; 250 W, 48 GB LPDDR5.
    _acc("MLU370", "MLU", "Cambricon", 48, 250, "Cambricon MLU370-X8 product page", fp32=24,
         bf16=96, fp16=96, int8=256),
)

CATALOG: Final[Mapping[str, Accelerator]] = MappingProxyType({a.name: a for a in _ENTRIES})
MODEL_NAMES: Final[tuple[str, ...]] = tuple(sorted(CATALOG))


def lookup(name: str) -> Accelerator | None:
    """The catalog entry for a model name (exact, case-sensitive), or None."""
    return CATALOG.get(name)
