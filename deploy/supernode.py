"""``flower-supernode`` with short waits, for a SuperNode served by a ClientApp worker.

    python -m deploy.supernode --superlink 127.0.0.1:9092 --insecure --port 9094 \\
        --node-config "partition-id=0 num-partitions=10"
    python -m deploy.clientapp_worker --runtime-api-address 127.0.0.1:9094 --insecure

Takes every ``flower-supernode`` flag and runs Flower's own SuperNode after
shortening its waits (``hl_flower.prompt_delivery``): the next pull from the
SuperLink 5 ms after the last instead of 3 s (each held open up to 10 s by
``deploy.superlink``); the worker's requests for a task and for message
parts held until there is one; and the wait for the ClientApp's reply ended
by the reply's arrival instead of a look every 0.5 s. Its two translation
layers run as plain ASGI layers (``deploy.lean_middleware``). Without ``--isolation``
it uses ``--isolation
process``: ClientApp messages then wait for ``deploy.clientapp_worker``
instead of each starting a new process. On a Flower other than the tested
version it says so in one line and keeps Flower's waits.
"""

from __future__ import annotations

import sys

# First: hl_flower pins the numerical kernels (hl_flower.determinism) before
# flwr loads numpy; the processes this one starts inherit the pins.
import hl_flower  # noqa: F401

# isort: split
from flwr.supernode.cli import flower_supernode

from deploy.cli import run_flower_command
from deploy.lean_middleware import lean_supernode_middleware
from hl_flower.prompt_delivery import STOCK_NOTE, patch_supernode_waits


def main(argv: list[str]) -> None:
    """Run Flower's SuperNode on ``argv`` with short waits."""
    if not any(arg == "--isolation" or arg.startswith("--isolation=") for arg in argv):
        argv = [*argv, "--isolation", "process"]
    patched = all([patch_supernode_waits(), lean_supernode_middleware()])
    run_flower_command(flower_supernode, argv, "python -m deploy.supernode",
                       None if patched else STOCK_NOTE)


if __name__ == "__main__":
    main(sys.argv[1:])
