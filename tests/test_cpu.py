"""The CPU description: parsed from /proc/cpuinfo texts of other machines, and consistent on this one."""

from __future__ import annotations

import json
import os
import platform

import pytest

from mobilenets import cpu

INTEL_AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt aes xsave avx f16c rdrand avx2 bmi2 erms

processor\t: 1
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt aes xsave avx f16c rdrand avx2 bmi2 erms
"""
AMD_AVX512_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi \
avx512_vnni avx512_bitalg
"""
INTEL_AMX = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx avx2 fma avx512f avx512bw avx512dq avx512vl avx_vnni avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 \
amx_tile amx_int8
"""
ALDER_LAKE = """model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
flags\t\t: sse4_2 avx fma avx2 avx_vnni
"""
NEOVERSE_N1 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0c
"""
CORTEX_A72 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.mark.parametrize(("text", "machine", "model", "isa", "dot"), [
    (INTEL_AVX2, "x86_64", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", ("AVX2",), False),
    (AMD_AVX512_VNNI, "x86_64", "AMD EPYC 9654 96-Core Processor", ("AVX2", "AVX-512", "VNNI", "BF16"), True),
    (INTEL_AMX, "x86_64", "Intel(R) Xeon(R) Platinum 8480+", ("AVX2", "AVX-512", "VNNI", "BF16", "AMX"), True),
    (ALDER_LAKE, "x86_64", "12th Gen Intel(R) Core(TM) i7-12700H", ("AVX2", "VNNI"), True),  # AVX-VNNI
    (NEOVERSE_N1, "aarch64", "ARM implementer 0x41 part 0xd0c", ("NEON", "dotprod"), True),
    (CORTEX_A72, "aarch64", "Raspberry Pi 4 Model B Rev 1.4", ("NEON",), False),
])
def test_cpuinfo_texts_give_the_model_instruction_sets_and_int8_dot_product(text, machine, model, isa, dot):
    info = cpu.parse_cpuinfo(text, machine)
    assert info.model == model and info.architecture == machine
    assert info.isa == isa and info.int8_dot_product is dot
    assert info.summary() == f"{model} · {machine} · {' '.join(isa)}"


def test_only_the_flags_that_choose_kernels_are_kept():
    assert cpu.parse_cpuinfo(AMD_AVX512_VNNI, "x86_64").flags == (
        "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16")
    assert cpu.parse_cpuinfo(NEOVERSE_N1, "aarch64").flags == ("asimd", "asimddp")


def test_without_cpuinfo_the_instruction_sets_are_unknown_not_absent():
    info = cpu.parse_cpuinfo("", "AMD64", default_model="Intel64 Family 6 Model 158")
    assert info.is_x86 and info.flags == () and not info.int8_dot_product
    assert info.summary() == "Intel64 Family 6 Model 158 · AMD64 · instruction sets unknown"


def test_the_summary_names_torch_dispatch_and_the_onednn_cap():
    info = cpu.CpuInfo("AMD EPYC", "x86_64", ("avx2", "avx512f", "avx512_vnni"), torch_capability="AVX512",
                       onednn_max_cpu_isa="AVX2")
    assert info.summary() == "AMD EPYC · x86_64 · AVX2 AVX-512 VNNI · torch AVX512 · ONEDNN_MAX_CPU_ISA=AVX2"


def test_this_cpu_is_described_consistently(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    info = cpu.describe()
    assert info.architecture == platform.machine() and info.model
    assert info.torch_capability == torch.backends.cpu.get_cpu_capability()
    assert info.onednn_max_cpu_isa == "AVX2" and info.summary() == cpu.summary()
    described = json.loads(json.dumps(info.to_dict()))
    assert described["summary"] == info.summary() and described["flags"] == list(info.flags)
    assert described["isa"] == list(info.isa) and described["int8_dot_product"] is info.int8_dot_product
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert cpu.describe().onednn_max_cpu_isa is None


def test_available_cores_are_the_affinity_mask_else_the_machines_count_and_at_least_one(monkeypatch):
    from mobilenets.serve.app import default_prepare_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 5}, raising=False)
    assert cpu.available_cores() == 3 and default_prepare_threads() == 1  # taskset -c 2,3,5 on a 64-core machine
    monkeypatch.delattr(os, "sched_getaffinity")
    assert cpu.available_cores() == 64 and default_prepare_threads() == 32
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cpu.available_cores() == 1 and default_prepare_threads() == 1
