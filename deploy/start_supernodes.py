"""Start N local SuperNodes, one per HL node, for a try-out on one machine.

    python -m deploy.start_supernodes --nodes 4 --insecure
    python -m deploy.start_supernodes --nodes 4 \\
        --root-certificates deploy/certificates/ca.crt --keys deploy/keys

SuperNode ``i`` serves partition ``i`` of ``--nodes``
(``--node-config "partition-id=i num-partitions=N"``), runs its Runtime API on
``--first-port + i`` and logs to ``<folder>/supernode-i.log``. Each SuperNode
has short waits and a long-lived ClientApp worker beside it
(``deploy.supernode``, ``deploy.clientapp_worker``, logging to
``<folder>/supernode-i-worker.log``); ``--stock`` runs Flower's own
``flower-supernode`` instead, which starts a fresh ClientApp process per
message. With ``--keys``
it authenticates with ``<keys>/supernode-i`` (``python -m
deploy.supernode_keys``). The script waits until every SuperNode is connected,
then keeps them running until Ctrl-C, which stops them all. On real devices,
start one ``python -m deploy.supernode`` and its worker per device instead
(docs/run-on-devices.md).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path

from deploy.cli import OneLineParser, UsageError, run_main
from deploy.local import (
    CONNECTED,
    PROJECT,
    LocalProcess,
    ProcessError,
    busy_port,
    environment,
    stop_together,
    supernode_command,
    worker_command,
)

DEFAULT_SUPERLINK = "127.0.0.1:8000"  # flower-superlink's default --host/--port
DEFAULT_FIRST_PORT = 9094  # flower-supernode's default Runtime API port
DEFAULT_FOLDER = Path("deploy/supernodes")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_inputs(args: argparse.Namespace) -> None:
    """Every file exists and every number fits, before anything starts."""
    if args.nodes < 1:
        raise UsageError(f"--nodes must be at least 1, got {args.nodes}")
    if not 1024 <= args.first_port <= 65535 - args.nodes:
        raise UsageError(f"--first-port must leave room for {args.nodes} ports "
                         f"in 1024..65535, got {args.first_port}")
    if (port := busy_port(args.first_port, args.nodes)) is not None:
        raise UsageError(f"port {port} is in use; SuperNode i listens on --first-port + i, "
                         "so choose another --first-port")
    if args.root_certificates and not args.root_certificates.is_file():
        raise UsageError(f"--root-certificates {args.root_certificates} does not exist; "
                         "make it with python -m deploy.make_certs")
    if args.keys:
        missing = [str(key_path(args.keys, i)) for i in range(args.nodes)
                   if not key_path(args.keys, i).is_file()]
        if missing:
            raise UsageError(f"no private key {missing[0]}; make one per node with "
                             f"python -m deploy.supernode_keys create --nodes {args.nodes}")


def key_path(keys: Path, node: int) -> Path:
    """Private key of SuperNode ``node`` in a folder made by deploy.supernode_keys."""
    return keys / f"supernode-{node}"


def refusal_reason(log: str) -> str:
    """The line of a SuperNode's log that says why it stopped."""
    lines = [ANSI.sub("", line).strip() for line in log.splitlines()]
    coded = [line for line in lines if line.startswith("[code:")]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (coded or errors or ["no reason logged"])[-1]


def start_all(args: argparse.Namespace) -> tuple[list[LocalProcess], list[LocalProcess]]:
    """Start the SuperNodes (and their workers); wait until each SuperNode is
    connected, or stop them all."""
    nodes, workers = [], []
    for i in range(args.nodes):
        port = args.first_port + i
        command = supernode_command(args.superlink, i, args.nodes, port,
                                    args.root_certificates,
                                    key_path(args.keys, i) if args.keys else None, args.stock)
        env = environment(args.folder / f"supernode-{i}-home")
        nodes.append(LocalProcess(f"supernode-{i}", command,
                                  args.folder / f"supernode-{i}.log", env, PROJECT))
        if not args.stock:
            workers.append(LocalProcess(f"supernode-{i}-worker", worker_command(port),
                                        args.folder / f"supernode-{i}-worker.log", env,
                                        PROJECT))
    try:
        for node in nodes:
            node.wait_for_log(CONNECTED, args.timeout)
    except ProcessError:
        failed = next(n for n in nodes if CONNECTED not in n.log())
        refused = not failed.running()
        stop_all(workers + nodes)
        if not refused:
            raise UsageError(f"{failed.name} did not connect to {args.superlink} within "
                             f"{args.timeout:.0f} s; is the SuperLink running there, with "
                             f"TLS as you chose? (log: {failed.log_path})") from None
        raise UsageError(f"{failed.name} was refused: {refusal_reason(failed.log())} "
                         f"(log: {failed.log_path})") from None
    return nodes, workers


def stop_all(nodes: list[LocalProcess]) -> None:
    """Stop every process (workers, SuperNodes) and what it started, all at once."""
    stop_together(nodes)


def report_exits(nodes: list[LocalProcess], pause: float = 1.0) -> None:
    """Print one line to stderr for each SuperNode that exits, with the reason
    its log gives; return when every one has exited (each reported once,
    the last one too), looking every ``pause`` seconds."""
    reported: set[str] = set()
    while len(reported) < len(nodes):
        for node in nodes:
            if not node.running() and node.name not in reported:
                reported.add(node.name)
                print(f"{node.name} exited: {refusal_reason(node.log())}",
                      file=sys.stderr, flush=True)
        if len(reported) < len(nodes):
            time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    """Start, report, wait for Ctrl-C, stop."""
    parser = OneLineParser(prog="python -m deploy.start_supernodes",
                           description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, required=True, help="how many SuperNodes (N)")
    parser.add_argument("--superlink", default=DEFAULT_SUPERLINK,
                        help=f"SuperLink address (default: {DEFAULT_SUPERLINK})")
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument("--insecure", action="store_true",
                          help="no TLS (a SuperLink started with --insecure)")
    security.add_argument("--root-certificates", type=Path,
                          help="CA certificate that signed the SuperLink's (TLS)")
    parser.add_argument("--keys", type=Path, default=None,
                        help="folder with supernode-<i> private keys (SuperNode auth)")
    parser.add_argument("--first-port", type=int, default=DEFAULT_FIRST_PORT,
                        help=f"Runtime API port of SuperNode 0 (default: {DEFAULT_FIRST_PORT})")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help=f"logs and Flower homes (default: {DEFAULT_FOLDER}); outside "
                             "the app folder, or git-ignored there, since `flwr run` packs "
                             "every file .gitignore does not exclude")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for each SuperNode to connect (default: 60)")
    parser.add_argument("--stock", action="store_true",
                        help="Flower's own flower-supernode: a fresh ClientApp process "
                             "(and TensorFlow import) per message, no workers")
    args = parser.parse_args(argv)
    check_inputs(args)
    # Ctrl-C, and SIGTERM alike, stop the SuperNodes (a shell starting this in the
    # background would otherwise have it ignore SIGINT).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    nodes: list[LocalProcess] = []
    workers: list[LocalProcess] = []
    try:
        nodes, workers = start_all(args)
        for i, node in enumerate(nodes):
            print(f"{node.name}: partition {i} of {args.nodes}, pid {node.pid}, "
                  f"log {node.log_path}")
        print(f"{len(nodes)} SuperNodes connected to {args.superlink}; Ctrl-C stops them",
              flush=True)
        report_exits(nodes)
        print("every SuperNode has exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the SuperNodes", flush=True)
        return 0
    finally:
        stop_all(workers + nodes)


if __name__ == "__main__":
    sys.exit(run_main(main))
