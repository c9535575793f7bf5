"""The machine a job ran on, as far as its numbers depend on it.

Float reductions (matrix products, sums) are split and vectorised according to the CPU's
instruction set (torch dispatches its kernels by the capability it detects: AVX2, AVX512 ...)
and to the GPU, so the same spec and seed give bit-identical numbers on one machine kind
but only statistically equal ones across kinds. The shard carries this record; collect puts
the distinct values into the dataset's attributes (machine_*).
"""
from __future__ import annotations

import platform

# instruction-set extensions that change how float kernels vectorise (x86 and ARM)
SIMD = ("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd", "neon", "sve")


def cpu() -> tuple[str, list[str]]:
    """(CPU model, its SIMD instruction-set flags), from /proc/cpuinfo where there is one."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = sorted(v for v in value.split() if v.startswith(SIMD))
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def describe() -> dict[str, str]:
    import torch

    model, flags = cpu()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"cpu": model, "cpu_flags": " ".join(flags), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gpu": ", ".join(gpus) or "none"}
