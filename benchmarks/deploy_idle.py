"""CPU an idle local deployment uses: a SuperLink and N SuperNodes with their
ClientApp workers on 127.0.0.1, no run.

    python benchmarks/deploy_idle.py                  # 10 nodes, 60 s settle, 15 s measured

Starts the deployment as ``deploy.local`` does (``deploy.superlink``,
``deploy.supernode`` and ``deploy.clientapp_worker``), waits until every
SuperNode is connected and ``--settle`` seconds more (the workers import
TensorFlow), then prints the CPU time (user + system, psutil) each kind of
process used over ``--seconds`` seconds, as a share of one core: the cost of
the held requests and heartbeats that keep an idle deployment ready.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from deploy_step import START_TIMEOUT, cpu_between, cpu_seconds

from deploy.local import CONNECTED, LocalFederation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds to wait after the SuperNodes connected (default 60)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="seconds measured (default 15)")
    args = parser.parse_args()
    if args.nodes < 1 or args.settle < 0 or args.seconds <= 0:
        parser.error("give --nodes 1 or more, --settle 0 or more and --seconds above 0")
    with tempfile.TemporaryDirectory() as tmp, LocalFederation(Path(tmp)) as local:
        local.start_superlink(START_TIMEOUT)
        nodes = [local.start_supernode(i, args.nodes) for i in range(args.nodes)]
        for node in nodes:
            node.wait_for_log(CONNECTED, START_TIMEOUT)
        time.sleep(args.settle)
        before, started = cpu_seconds(local.leftover_pids()), time.perf_counter()
        time.sleep(args.seconds)
        spent = cpu_between(before, cpu_seconds(local.leftover_pids()))
        seconds = time.perf_counter() - started
    shares = sorted(((kind, 100 * cpu / seconds) for kind, cpu in spent.items()),
                    key=lambda item: -item[1])
    print(f"idle deployment, {args.nodes} SuperNodes with workers, {seconds:.1f} s: "
          + ", ".join(f"{kind} {share:.1f}%" for kind, share in shares)
          + f"; all {sum(share for _, share in shares):.1f}% of a core")


if __name__ == "__main__":
    main()
