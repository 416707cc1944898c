"""The CPU this process runs on: model, architecture and the instruction sets that decide which kernels PyTorch,
oneDNN and onnxruntime run, so that benchmarks say where they were measured and int8 export can choose its weights;
and the cores and memory the process may use.

Read from /proc/cpuinfo on Linux; elsewhere only the `platform` module's model and architecture are known (no
instruction sets). PyTorch's own dispatch level and the `ONEDNN_MAX_CPU_ISA` cap (which changes oneDNN's kernels,
and with them PyTorch's rounding) are reported beside the hardware's flags. Imports nothing heavy: torch only
when `describe` runs.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
X86_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16", "sme")
# (label, any of these flags): what the one-line summary names, in order
X86_LABELS = (("AVX2", ("avx2",)), ("AVX-512", ("avx512f",)), ("VNNI", ("avx512_vnni", "avx_vnni")),
              ("BF16", ("avx512_bf16",)), ("AMX", ("amx_tile",)))
ARM_LABELS = (("NEON", ("asimd",)), ("dotprod", ("asimddp",)), ("i8mm", ("i8mm",)), ("SVE", ("sve", "sve2")),
              ("BF16", ("bf16",)), ("SME", ("sme",)))
MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")


@dataclass(frozen=True)
class CpuInfo:
    """A CPU as the kernels see it: `flags` are the instruction-set flags of X86_FLAGS / ARM_FLAGS it has."""

    model: str
    architecture: str
    flags: tuple[str, ...]
    torch_capability: str | None = None
    onednn_max_cpu_isa: str | None = None

    @property
    def is_x86(self) -> bool:
        """An x86 CPU (VNNI is its int8 dot product), else ARM or other (asimddp)."""
        return _is_x86(self.architecture)

    @property
    def isa(self) -> tuple[str, ...]:
        """Short names of the instruction sets that matter for inference, e.g. ('AVX2', 'AVX-512', 'VNNI')."""
        labels = X86_LABELS if self.is_x86 else ARM_LABELS
        return tuple(label for label, flags in labels if any(f in self.flags for f in flags))

    @property
    def int8_dot_product_name(self) -> str:
        """The instruction that sums int8 products in 32 bits on this architecture."""
        return "VNNI" if self.is_x86 else "asimddp (ARM's int8 dot product)"

    @property
    def int8_dot_product(self) -> bool:
        """Whether int8 products are summed in 32 bits by one instruction: VNNI on x86, asimddp on ARM."""
        wanted = ("avx512_vnni", "avx_vnni") if self.is_x86 else ("asimddp",)
        return any(f in self.flags for f in wanted)

    def summary(self) -> str:
        """One line, e.g. 'AMD EPYC · x86_64 · AVX2 AVX-512 VNNI · torch AVX512'."""
        parts = [self.model, self.architecture, " ".join(self.isa) or "instruction sets unknown"]
        if self.torch_capability:
            parts.append(f"torch {self.torch_capability}")
        if self.onednn_max_cpu_isa:
            parts.append(f"ONEDNN_MAX_CPU_ISA={self.onednn_max_cpu_isa}")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, the derived `isa` and `int8_dot_product`, and the `summary` line."""
        return asdict(self) | {"isa": self.isa, "int8_dot_product": self.int8_dot_product, "summary": self.summary()}


def parse_cpuinfo(text: str, machine: str, *, default_model: str = "unknown CPU") -> CpuInfo:
    """The CpuInfo of a /proc/cpuinfo `text` (its first value of each key) on architecture `machine`; the model is
    `default_model` where the text names none."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    known = X86_FLAGS if _is_x86(machine) else ARM_FLAGS
    model = next((fields[k] for k in MODEL_KEYS if fields.get(k)), "")
    if not model and "CPU implementer" in fields:
        model = f"ARM implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return CpuInfo(model or default_model, machine, tuple(f for f in known if f in present))


def _is_x86(machine: str) -> bool:
    return machine.lower() in X86_MACHINES


def _read_cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text(errors="replace") if path.is_file() else ""


def _torch_capability() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def describe() -> CpuInfo:
    """This process's CPU, with PyTorch's dispatch level and the ONEDNN_MAX_CPU_ISA cap if one is set."""
    info = parse_cpuinfo(_read_cpuinfo(), platform.machine() or "unknown",
                         default_model=platform.processor() or "unknown CPU")
    return replace(info, torch_capability=_torch_capability(), onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))


def summary() -> str:
    """The one-line summary of this process's CPU, to print at the top of a benchmark."""
    return describe().summary()


def available_cores() -> int:
    """The cores this process may run on: its affinity mask where the OS keeps one (a cpuset or `taskset` can
    grant fewer than the machine has; a CPU quota does not show here), else the machine's count; at least one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def memory_bytes() -> float:
    """The machine's physical memory in bytes, or infinity where the OS does not say (then nothing is refused)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or not these names
        return float("inf")
