"""``flower-superlink`` that answers a SuperNode's pull as soon as a message waits.

    python -m deploy.superlink --insecure --disable-runtime-dependency-installation

Takes every ``flower-superlink`` flag and runs Flower's own SuperLink after
two changes. ``hl_flower.prompt_delivery``: a request that waits for something
(a SuperNode's pull of its next message, held open up to 10 s; a pull of a
message part, or the ServerApp's pull of replies or of their parts, up to
2 s) is answered as soon as the push it waits for arrives, so SuperNodes
started with ``python -m deploy.supernode`` get their message at once while
an idle one asks about every 10 s; and the SuperLink's six layers that act on one API only
(Control or Fleet) run only for that API's requests, and its error and
protobuf translation layers run as plain ASGI layers
(``deploy.lean_middleware``). On a Flower other than the
tested version it says so in one line and runs unchanged.
"""

from __future__ import annotations

import os
import sys

# First: hl_flower pins the numerical kernels (hl_flower.determinism) before
# flwr loads numpy; the processes this one starts inherit the pins.
import hl_flower  # noqa: F401

# isort: split
from flwr.superlink.cli import flower_superlink

from deploy.cli import path_with_this_python, run_flower_command
from deploy.lean_middleware import scope_superlink_middleware
from hl_flower.prompt_delivery import STOCK_NOTE, patch_superlink_waits


def main(argv: list[str]) -> None:
    """Run Flower's SuperLink on ``argv`` with held pulls."""
    os.environ["PATH"] = path_with_this_python()  # it starts flower-superexec by name
    patched = all([patch_superlink_waits(), scope_superlink_middleware()])
    run_flower_command(flower_superlink, argv, "python -m deploy.superlink",
                       None if patched else STOCK_NOTE)


if __name__ == "__main__":
    main(sys.argv[1:])
