"""Which TensorFlow settings change the numbers a run computes? Measured.

    python benchmarks/kernel_determinism.py            # ~1 min on 2 cores
    python benchmarks/kernel_determinism.py --load     # the same, next to busy processes

Each configuration runs in a fresh process: five local epochs of the
reference CNN on mnist-5k node 1 from the same seeded weights and batch
orders (``LocalTrainer``, as a node trains), then five fits of the reference
DQN on a fixed minibatch (``DQNAgent``'s network, as the server trains it).
It prints a fingerprint of the resulting weights and the time per epoch.
Equal fingerprints mean bit-identical weights. ``pinned`` is what every
``hl_flower`` process uses (``hl_flower.determinism``); the others free one
setting at a time (``HL_DETERMINISTIC=0`` plus the variable shown).
``--load`` runs a busy process per core throughout. It asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FREE = {"HL_DETERMINISTIC": "0"}
CONFIGURATIONS = {
    "pinned (1 thread, oneDNN <= AVX2)": {},
    "2 threads, oneDNN <= AVX2": FREE | {"TF_NUM_INTRAOP_THREADS": "2",
                                         "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "1 thread, oneDNN's own choice of ISA": FREE | {"TF_NUM_INTRAOP_THREADS": "1"},
    "free (TensorFlow's defaults)": FREE,
    "free + op determinism": FREE | {"TF_DETERMINISTIC_OPS": "1"},
    "1 thread + op determinism": FREE | {"TF_NUM_INTRAOP_THREADS": "1",
                                         "TF_DETERMINISTIC_OPS": "1"},
}


def fingerprint(weights: list) -> str:
    """First 12 hex digits of the SHA-256 of the weights' bytes."""
    return hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest()[:12]


def measure() -> dict[str, object]:
    """Train the CNN and the DQN as a run does; fingerprints and timing."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import tensorflow as tf

    from hl_flower import tf_setup  # noqa: F401  (pins unless HL_DETERMINISTIC=0)
    from hl_flower.config import preset
    from hl_flower.data import load_partition
    from hl_flower.dqn import build_q_network
    from hl_flower.image_sets import load_training_set
    from hl_flower.model import LocalTrainer
    from hl_flower.reference_task import build_node_model, fresh_weights

    dataset = load_training_set("mnist-5k")
    data = load_partition(dataset, 1, 10, 400, 100, "reference", 0)
    model = build_node_model(dataset.input_shape, dataset.num_classes)
    trainer = LocalTrainer(model, data.x)
    model.set_weights(fresh_weights(model, 3))
    started = time.perf_counter()
    for epoch in range(5):
        trainer.fit_epochs(data.x, data.y, 1, 32, np.random.default_rng(epoch))
    per_epoch = (time.perf_counter() - started) / 5
    tf.keras.utils.set_random_seed(0)
    network = build_q_network(preset("quick"))
    rng = np.random.default_rng(0)
    states = rng.normal(size=(128, network.input_shape[1])).astype(np.float32)
    targets = rng.normal(size=(128, network.output_shape[1])).astype(np.float32)
    for _ in range(5):
        network.fit(states, targets, epochs=1, batch_size=16, shuffle=False, verbose=0)
    return {"cnn": fingerprint(model.get_weights()),
            "dqn": fingerprint(network.get_weights()), "epoch_seconds": per_epoch}


@contextlib.contextmanager
def busy_cores(on: bool = True, cores: set[int] | None = None, nice: int = 0
               ) -> Iterator[None]:
    """A busy process per core while the block runs (if ``on``): on every
    core, or one pinned to each of ``cores``, at priority ``nice`` (19: it
    takes the time slices the run leaves, so it interleaves with the run
    without halving it). The tests use it too."""
    pinned = sorted(cores) if cores is not None else [None] * (os.cpu_count() or 1)

    def pin(core: int | None):  # -> the child's pre-exec hook
        def hook() -> None:
            os.nice(nice)
            if core is not None:
                os.sched_setaffinity(0, {core})
        return hook

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                preexec_fn=pin(core)) for core in pinned] if on else []
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main() -> None:
    """Run every configuration twice in fresh processes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", action="store_true", help="busy processes on every core")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    clean = {k: v for k, v in os.environ.items() if k not in {
        "TF_NUM_INTRAOP_THREADS", "ONEDNN_MAX_CPU_ISA", "TF_DETERMINISTIC_OPS",
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HL_DETERMINISTIC"}}
    print(f"{os.cpu_count()} cores{', busy processes on each' if args.load else ''}; "
          "two fresh processes per configuration\n")
    print("| configuration | CNN weights | DQN weights | seconds per epoch |")
    print("|---|---|---|---|")
    with busy_cores(args.load):
        for name, variables in CONFIGURATIONS.items():
            for _ in range(2):
                done = subprocess.run([sys.executable, __file__, "--child"],
                                      env=clean | variables, capture_output=True,
                                      text=True, check=True)
                result = json.loads(done.stdout.splitlines()[-1])
                print(f"| {name} | {result['cnn']} | {result['dqn']} | "
                      f"{result['epoch_seconds']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
