"""The dtype that ``auto`` picks for the CPU it runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from routehead_rag.backbone import cpu_has_bf16_matmul


@pytest.mark.parametrize(("flags", "fast"), [
    ("fpu sse2 avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
    ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4
    ("fpu sse2 avx2 avx512f avx512_vnni", False),
    ("fpu sse2 avx2 avx_vnni", False),
])
def test_bf16_is_fast_only_with_a_bf16_matmul_flag(tmp_path: Path, flags: str, fast: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some cpu amx_bf16 in its name\nflags\t\t: {flags}\n")
    assert cpu_has_bf16_matmul(cpuinfo) is fast


def test_no_cpuinfo_means_no_bf16(tmp_path: Path) -> None:
    assert cpu_has_bf16_matmul(tmp_path / "absent") is False
