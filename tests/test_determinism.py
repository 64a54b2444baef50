"""hl_flower.determinism: the kernels a process that imports hl_flower uses,
read back from the loaded libraries (threadpoolctl), in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hl_flower.determinism import OPENBLAS_CORE, cpu_has_avx

ROOT = Path(__file__).resolve().parents[1]

# the OpenBLAS core type of every BLAS library loaded after importing `first`
KERNELS = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
import numpy, scipy.linalg, threadpoolctl
print(json.dumps([i["architecture"] for i in threadpoolctl.threadpool_info()
                  if i["internal_api"] == "openblas"]))
"""
needs_avx = pytest.mark.skipif(not cpu_has_avx(), reason="pinned only on an x86-64 CPU with AVX")


def openblas_cores(first: str, **environment: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", KERNELS, first], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | environment)
    return json.loads(done.stdout.splitlines()[-1])


@needs_avx
def test_numpy_and_scipy_run_sandybridge_kernels_over_the_machines_choice() -> None:
    cores = openblas_cores("hl_flower", OPENBLAS_CORETYPE="Haswell")
    assert len(cores) == 2 and set(cores) == {OPENBLAS_CORE}  # numpy's and scipy's


@needs_avx
def test_the_clientapp_worker_pins_before_flower_loads_numpy() -> None:
    assert set(openblas_cores("deploy.clientapp_worker", OPENBLAS_CORETYPE="Haswell")) == {
        OPENBLAS_CORE}


def test_hl_deterministic_0_keeps_the_machines_kernels() -> None:
    cores = openblas_cores("hl_flower", OPENBLAS_CORETYPE="Haswell", HL_DETERMINISTIC="0")
    assert set(cores) == {"Haswell"}


@pytest.mark.parametrize(("text", "has_avx"), [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n", True),
    ("flags\t\t: fpu sse2 ssse3 sse4_2\n", False),
    ("flags\t\t: fpu sse2 avx512f\n", False),  # a flag's name, not a part of one
    ("processor\t: 0\nmodel name\t: avx in a name\n", False),  # no flags line
])
def test_avx_is_read_from_the_flags_line(tmp_path: Path, text: str, has_avx: bool) -> None:
    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_has_avx(tmp_path / "cpuinfo") is has_avx


def test_no_cpuinfo_means_no_forced_kernels(tmp_path: Path) -> None:
    assert cpu_has_avx(tmp_path / "missing") is False


@needs_avx
@pytest.mark.parametrize(("machine_core", "warned"), [("Haswell", True), (OPENBLAS_CORE, False)])
def test_numpy_imported_first_with_other_kernels_is_one_warning(machine_core: str,
                                                                warned: bool) -> None:
    done = subprocess.run([sys.executable, "-c", "import numpy, hl_flower"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"OPENBLAS_CORETYPE": machine_core})
    expected = f"its OpenBLAS runs Haswell kernels, not {OPENBLAS_CORE}"
    assert (done.stderr.count(expected) == 1) is warned, done.stderr
