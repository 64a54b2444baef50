"""Start and stop real Flower processes on this machine: a SuperLink, SuperNodes.

A SuperNode runs with short waits and a long-lived ClientApp worker beside it
(``deploy.supernode`` and ``deploy.clientapp_worker``) unless ``stock=True``,
which runs Flower's own ``flower-supernode`` (a fresh ClientApp process per
message).

Used by ``python -m deploy.start_supernodes`` and by the deployment tests.
Every process starts in its own session with a tag in its environment, so
stopping it also stops what it started (Flower's SuperExec and the ServerApp
and ClientApp processes), even those already orphaned. POSIX only.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from deploy.cli import flower_executable, path_with_this_python

LOOPBACK = "127.0.0.1"
TAG_VARIABLE = "HL_FLOWER_LOCAL_TAG"
# No update check, no telemetry (both would go online), quiet TensorFlow, and no
# `uv sync` of the app's dependencies per run: this environment has them all.
QUIET_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
CONNECTED = "SuperNode ID:"  # a SuperNode logs this once the SuperLink accepted it
SUPERLINK_READY = "Application startup complete"
PROJECT = Path(__file__).resolve().parents[1]  # where `python -m deploy.<script>` runs


class ProcessError(RuntimeError):
    """A process did not start, exited, or did not log what was expected."""


# free_port's picks: from here to below the kernel's own range. Above Ray's
# default worker ports (10002-19999; a simulation's Ray workers bind there, and
# `ray start` refuses a --port inside that range).
LOWEST_PORT = 20000
FEWEST_PORTS = 1000  # a smaller range to pick from is unusual: the kernel picks instead


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel gives outgoing connections their ports from
    (Linux's ``ip_local_port_range``; its default where that is not readable)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def pick_range() -> tuple[int, int] | None:
    """The ports :func:`free_port` picks from, ``(first, end)`` with ``end``
    excluded: :data:`LOWEST_PORT` up to the kernel's ephemeral range; None
    when that holds fewer than :data:`FEWEST_PORTS` (the kernel picks then)."""
    low, _ = ephemeral_ports()
    return (LOWEST_PORT, low) if low - LOWEST_PORT >= FEWEST_PORTS else None


def free_port(host: str = LOOPBACK, tries: int = 100) -> int:
    """A TCP port nobody listens on right now, picked at random below the
    kernel's ephemeral range: a port from that range (what binding port 0
    gives) can be taken by any outgoing connection before the process that
    was told to listen there binds it (seen in CI: "SuperNode Runtime HTTP
    API failed to start"). Raises ProcessError when no free port is found."""
    span = pick_range()
    if span is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    for _ in range(tries):
        port = random.randrange(*span)
        if busy_port(port, 1, host) is None:
            return port
    raise ProcessError(f"found no free port in {span[0]}..{span[1] - 1}")


def busy_port(first: int, count: int, host: str = LOOPBACK) -> int | None:
    """The first of ports ``first`` .. ``first + count - 1`` that cannot be
    bound now (someone listens there), or None when all are free."""
    for port in range(first, first + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return port
    return None


def free_ports_in_a_row(count: int, host: str = LOOPBACK, tries: int = 50) -> int:
    """First of ``count`` consecutive free ports (for ``start_supernodes --first-port``),
    all inside :func:`pick_range` when :func:`free_port` picks there."""
    span = pick_range()
    below = span[1] if span else 65536
    for _ in range(tries):
        first = free_port(host)
        if first + count <= below and busy_port(first, count, host) is None:
            return first
    raise ProcessError(f"found no {count} free ports in a row")


def environment(flwr_home: Path) -> dict[str, str]:
    """This process's environment, quiet, with its own Flower home folder,
    and this Python's ``bin`` folder first on ``PATH``
    (:func:`deploy.cli.path_with_this_python`)."""
    return os.environ | QUIET_ENVIRONMENT | {"FLWR_HOME": str(flwr_home),
                                             "PATH": path_with_this_python()}


class LocalProcess:
    """A Flower process with its log file; stop() ends it and everything it started."""

    def __init__(self, name: str, command: list[str], log_path: Path,
                 env: dict[str, str], cwd: Path | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.tag = f"{name}-{uuid.uuid4().hex}"
        # Tags accumulate, so a LocalProcess started by a LocalProcess (the
        # helper script's SuperNodes) still belongs to the outer one's family.
        tags = ":".join(filter(None, [env.get(TAG_VARIABLE), self.tag]))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # A restarted process appends to its old log; log() shows only its own part.
        self.log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env | {TAG_VARIABLE: tags}, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        """Process id of the Flower command itself."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the Flower command is still running."""
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process has logged so far."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 15) -> str:
        """The last lines of the log, for error messages."""
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the log contains ``text``; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if not self.running():
                # 40 lines: what the process logged before its traceback too
                raise ProcessError(f"{self.name} exited (code {self.popen.returncode}) "
                                   f"before logging {text!r}:\n{self.tail(40)}")
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} did not log {text!r} within "
                                   f"{timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def wait_for_exit(self, timeout: float) -> int:
        """Wait until the Flower command exits; return its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessError(f"{self.name} still runs after {timeout:.0f} s:\n"
                               f"{self.tail()}") from None

    def family(self) -> list[int]:
        """Ids of the live processes this one started (itself included)."""
        # Once our child is reaped its pid may be reused: then trust the tag only.
        below = _descendants(self.pid) if self.running() else []
        return sorted(set(_tagged_pids(self.tag)) | set(below))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully, then end the rest of the family; SIGKILL after
        ``timeout`` (:func:`stop_together` for this one process)."""
        stop_together([self], timeout)

    def kill(self) -> None:
        """SIGKILL the whole family at once (a device that crashes).

        A SuperNode killed this way stays "online" at the SuperLink until its
        heartbeat expires (about a minute), and is refused if started again
        before that.
        """
        if self.running():
            _send(-self.pid, signal.SIGKILL)  # its process group
        for pid in self.family():
            _send(pid, signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _wait_until_gone([self], time.monotonic() + 10)  # TensorFlow takes a moment to go


def stop_together(processes: list[LocalProcess], timeout: float = 10.0) -> None:
    """Stop ``processes`` at once, each step for all of them before the next:
    one SIGTERM to each Flower command alone (a SuperNode then signs off at
    the SuperLink, so it may connect again at once; a second signal during
    its shutdown would cut that short), up to ``timeout`` / 2 seconds for
    them to exit, SIGTERM to whatever they started, then SIGKILL to what is
    left after ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    running = [process for process in processes if process.running()]
    for process in running:
        process.popen.send_signal(signal.SIGTERM)
    graceful = time.monotonic() + timeout / 2
    for process in running:
        try:
            process.popen.wait(max(0.0, graceful - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        for pid in process.family():
            _send(pid, signal.SIGTERM)
    _wait_until_gone(processes, deadline)
    for process in processes:
        process.kill()


def _wait_until_gone(processes: list[LocalProcess], deadline: float) -> None:
    """Wait until no process of ``processes``' families is alive, or until
    ``deadline`` (``time.monotonic()``)."""
    while any(process.family() for process in processes) and time.monotonic() < deadline:
        time.sleep(0.1)


def _send(pid: int, signum: int) -> None:
    """Signal a process (negative: a process group) that may be gone already."""
    try:
        if pid < 0:
            os.killpg(-pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _tagged_pids(tag: str) -> list[int]:
    """Processes whose environment carries ``tag`` (Linux; empty elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    prefix = f"{TAG_VARIABLE}=".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for variable in variables:
            if variable.startswith(prefix) and tag in variable[len(prefix):].decode(
                    errors="replace").split(":"):
                found.append(int(entry.name))
    return found


def _descendants(root: int) -> list[int]:
    """``root`` and every live process below it, from ``ps``."""
    try:
        listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,stat="],
                                 capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    children: dict[int, list[int]] = {}
    alive = set()
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[2].startswith("Z"):
            pid, parent = int(fields[0]), int(fields[1])
            children.setdefault(parent, []).append(pid)
            alive.add(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in alive:
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def superlink_command(port: int, certificates: Path | None = None,
                      supernode_auth: bool = False, host: str = LOOPBACK,
                      stock: bool = False) -> list[str]:
    """A SuperLink on ``host:port``; TLS with ``certificates`` (make_certs'
    folder). ``stock``: Flower's ``flower-superlink`` as it is; otherwise
    ``deploy.superlink`` (SuperNodes' pulls held open until a message waits)."""
    command = ([flower_executable("flower-superlink")] if stock
               else [sys.executable, "-m", "deploy.superlink"])
    command += ["--host", host, "--port", str(port), "--disable-runtime-dependency-installation"]
    if certificates is None:
        command.append("--insecure")
    else:
        command += ["--ssl-ca-certfile", str(certificates / "ca.crt"),
                    "--ssl-certfile", str(certificates / "server.pem"),
                    "--ssl-keyfile", str(certificates / "server.key")]
    if supernode_auth:
        command.append("--enable-supernode-auth")
    return command


def supernode_command(superlink: str, partition: int | None, num_partitions: int, port: int,
                      root_certificates: Path | None = None,
                      private_key: Path | None = None, stock: bool = False) -> list[str]:
    """A SuperNode serving one partition (None: no ``--node-config``); its
    Runtime API on ``port``. ``stock``: Flower's ``flower-supernode`` as it
    is; otherwise ``deploy.supernode`` (short waits, ``--isolation
    process``), which needs :func:`worker_command` beside it."""
    command = ([flower_executable("flower-supernode")] if stock
               else [sys.executable, "-m", "deploy.supernode"])
    command += ["--superlink", superlink, "--port", str(port)]
    if partition is not None:
        command += ["--node-config", f"partition-id={partition} num-partitions={num_partitions}"]
    if root_certificates is None:
        command.append("--insecure")
    else:
        command += ["--root-certificates", str(root_certificates)]
    if private_key is not None:
        command += ["--auth-supernode-private-key", str(private_key)]
    return command


def worker_command(port: int) -> list[str]:
    """The ClientApp worker of the SuperNode whose Runtime API is on ``port``."""
    return [sys.executable, "-m", "deploy.clientapp_worker",
            "--runtime-api-address", f"{LOOPBACK}:{port}", "--insecure"]


def write_connection(flwr_home: Path, name: str, address: str,
                     root_certificates: Path | None = None) -> Path:
    """Replace ``flwr_home``'s Flower configuration: one connection, the default."""
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]",
             f'address = "{address}"']
    if root_certificates is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{root_certificates}"')
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class LocalFederation:
    """A SuperLink and SuperNodes on 127.0.0.1, with their files in one folder.

    Parameters
    ----------
    folder : Path
        Logs and each process's Flower home go here.
    certificates : Path, optional
        Folder written by ``deploy.make_certs``: TLS on. None: insecure.
    supernode_auth : bool (default: False)
        Only registered SuperNodes may connect (needs ``certificates``).
    stock : bool (default: False)
        Flower's own SuperNodes, a fresh ClientApp process per message;
        otherwise short waits and one long-lived worker per SuperNode.
    """

    def __init__(self, folder: Path, certificates: Path | None = None,
                 supernode_auth: bool = False, stock: bool = False) -> None:
        self.folder = folder
        self.certificates = certificates
        self.supernode_auth = supernode_auth
        self.stock = stock
        self.port = free_port()
        self.superlink: LocalProcess | None = None
        self.supernodes: dict[str, LocalProcess] = {}
        self.workers: dict[str, LocalProcess] = {}  # by their SuperNode's name
        self.others: list[LocalProcess] = []  # e.g. `flwr run`

    @property
    def address(self) -> str:
        """Where SuperNodes and the ``flwr`` command reach the SuperLink."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def root_certificates(self) -> Path | None:
        """The CA certificate SuperNodes and ``flwr`` trust (None when insecure)."""
        return self.certificates / "ca.crt" if self.certificates else None

    def start_superlink(self, timeout: float = 60.0) -> LocalProcess:
        """Start the SuperLink and wait until it serves."""
        self.superlink = LocalProcess(
            "superlink", superlink_command(self.port, self.certificates, self.supernode_auth,
                                           stock=self.stock),
            self.folder / "superlink.log", environment(self.folder / "superlink-home"), PROJECT)
        self.superlink.wait_for_log(SUPERLINK_READY, timeout)
        return self.superlink

    def start_supernode(self, partition: int | None, num_partitions: int,
                        private_key: Path | None = None, name: str = "") -> LocalProcess:
        """Start a SuperNode for ``partition`` (None: no node config) and its
        worker; the SuperNode connects in the background."""
        name = name or f"supernode-{partition}"
        if name in self.supernodes and self.supernodes[name].running():
            raise ProcessError(f"{name} is already running")
        port = free_port()
        command = supernode_command(self.address, partition, num_partitions, port,
                                    self.root_certificates, private_key, self.stock)
        env = environment(self.folder / f"{name}-home")
        node = LocalProcess(name, command, self.folder / f"{name}.log", env, PROJECT)
        self.supernodes[name] = node
        if not self.stock:
            self.workers[name] = LocalProcess(f"{name}-worker", worker_command(port),
                                              self.folder / f"{name}-worker.log", env, PROJECT)
        return node

    def kill_node(self, name: str) -> None:
        """SIGKILL a SuperNode and its worker (a device that crashes)."""
        for process in (self.supernodes[name], self.workers.get(name)):
            if process is not None:
                process.kill()

    def connection(self, flwr_home: Path, name: str = "local-deployment") -> Path:
        """Write a Flower configuration whose default connection is this SuperLink."""
        return write_connection(flwr_home, name, self.address, self.root_certificates)

    def start(self, name: str, command: list[str], flwr_home: Path,
              cwd: Path | None = None) -> LocalProcess:
        """Start another command (``flwr run``...) that stop_all() also stops."""
        process = LocalProcess(name, command, self.folder / f"{name}.log",
                               environment(flwr_home), cwd)
        self.others.append(process)
        return process

    def processes(self) -> list[LocalProcess]:
        """Every process started: others, workers, SuperNodes, then the SuperLink."""
        return (self.others + list(self.workers.values()) + list(self.supernodes.values())
                + ([self.superlink] if self.superlink else []))

    def leftover_pids(self) -> list[int]:
        """Processes of this federation that are still alive."""
        return sorted(pid for process in self.processes() for pid in process.family())

    def stop_all(self) -> None:
        """Stop every process, the SuperLink last, and everything they started."""
        stop_together([p for p in self.processes() if p is not self.superlink])
        if self.superlink:
            self.superlink.stop()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()
