"""Same seed, same run: pin the numerical kernels before TensorFlow loads.

Measured on TensorFlow 2.21 (CPU), training the reference CNN for five
epochs from the same weights (``docs/results.md``, "Reproducibility"):

- the weights differ between 1 and 2 intra-op threads (oneDNN and Eigen
  split reductions by thread count), so a machine with another core count,
  or a Ray actor given other CPUs, trains a different model;
- they differ between oneDNN's AVX-512 and AVX2 kernels, which oneDNN picks
  at run time from the CPU, so an AVX-512 machine and an AVX2 machine
  disagree (the DQN's fit too);
- op determinism (``tf.config.experimental.enable_op_determinism``) does not
  help: its results still depend on the thread count;
- numpy's and scipy's OpenBLAS pick their kernels from the CPU too (Haswell
  kernels on an AVX2 AMD EPYC of family 23, others on an AVX-512 one), and
  the observation's PCA and the DQN's numpy forward pass round differently
  with them: the same seed trained another policy on each of those two
  machines (README, "Reproducibility"). With OpenBLAS's Sandybridge
  kernels (AVX, which both have) the AVX2 machine reproduced the AVX-512
  one's quick-preset and digits runs exactly, though not a random-starter
  run on a Dirichlet partition (something else still depends on the CPU).

So every process that imports ``hl_flower`` runs TensorFlow's kernels on one
intra-op thread, caps oneDNN at AVX2, runs numpy's BLAS on one thread and,
on an x86-64 Linux CPU with AVX, OpenBLAS's Sandybridge kernels
(``OPENBLAS_CORETYPE``; OpenBLAS reads it when it loads, so it reaches the
processes this one starts, not a numpy this process loaded already). HL
trains one node at a time on a few hundred samples, where one thread costs
little (the measured cost per step is in the README). Set
``HL_DETERMINISTIC=0`` before starting Python to let the libraries choose
(faster on many cores, not reproducible across machines); a variable the
user set already (say ``TF_NUM_INTRAOP_THREADS=4``) is kept either way,
except ``OPENBLAS_CORETYPE``: machine images set it for every program (this
project's CI machine sets ``Haswell``), so a pinned process overrides it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SWITCH = "HL_DETERMINISTIC"

PINNED_ENVIRONMENT = {
    "TF_NUM_INTRAOP_THREADS": "1",  # read when TensorFlow's runtime starts
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # read at oneDNN's first primitive
    "OPENBLAS_NUM_THREADS": "1",  # read when numpy loads OpenBLAS
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


OPENBLAS_CORE = "Sandybridge"  # the newest OpenBLAS kernels every AVX CPU runs


def cpu_has_avx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU lists the ``avx`` flag in ``cpuinfo`` (x86-64 Linux);
    False where the file is missing or unreadable. OpenBLAS does not check
    a forced core type: Sandybridge kernels on a CPU without AVX would stop
    the process with an illegal instruction."""
    try:
        with cpuinfo.open() as lines:
            flags = next((line for line in lines if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx" in flags.partition(":")[2].split()


def forced_environment() -> dict[str, str]:
    """The variables :func:`pin_numerics` sets whatever their value was."""
    return {"OPENBLAS_CORETYPE": OPENBLAS_CORE} if cpu_has_avx() else {}


def deterministic_requested() -> bool:
    """False only when ``HL_DETERMINISTIC`` is ``0``, ``false`` or ``no``."""
    return os.environ.get(SWITCH, "1").strip().lower() not in {"0", "false", "no"}


def pin_numerics() -> bool:
    """Pin threads and kernels for this process and the ones it starts.

    Environment variables reach Ray's workers and ``flwr-clientapp``
    processes, which import ``hl_flower`` themselves. A library loaded
    before this call is limited at run time where it allows it (numpy's
    BLAS through threadpoolctl; TensorFlow if its runtime has not started).
    Returns whether the process is pinned.
    """
    if not deterministic_requested():
        return False
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    forced = forced_environment()
    os.environ.update(forced)
    if "numpy" in sys.modules:  # OpenBLAS read its thread count and core type already
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
        _warn_about_loaded_kernels(forced.get("OPENBLAS_CORETYPE"))
    if "tensorflow" in sys.modules:
        _pin_loaded_tensorflow(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
    return True


def _warn_about_loaded_kernels(wanted: str | None) -> None:
    """One warning when a BLAS already loaded runs other kernels than the
    forced ``wanted`` ones (numpy imported before hl_flower, without the
    variable); nothing when no core type is forced."""
    if wanted is None:
        return
    from threadpoolctl import threadpool_info

    loaded = {info.get("architecture") for info in threadpool_info()
              if info.get("internal_api") == "openblas"}
    other = sorted(str(core) for core in loaded if core != wanted)
    if other:
        import warnings

        warnings.warn(f"numpy was imported before hl_flower, so its OpenBLAS runs "
                      f"{', '.join(other)} kernels, not {wanted}: runs may differ across "
                      f"machines. Import hl_flower first, or start Python with "
                      f"OPENBLAS_CORETYPE={wanted}.", RuntimeWarning, stacklevel=3)


def _pin_loaded_tensorflow(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # its runtime started before hl_flower was imported
        import warnings

        warnings.warn("TensorFlow was initialised before hl_flower was imported, so "
                      "its thread count is not pinned: runs may differ across "
                      "machines. Import hl_flower first.", RuntimeWarning, stacklevel=3)
