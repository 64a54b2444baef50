"""A long-lived ClientApp worker for one SuperNode: TensorFlow is imported once.

Flower 1.42 runs every message in a fresh ``flwr-clientapp`` process, so each
HL step pays for Python's start-up, the TensorFlow import and the model build
(about 10 s a step on one machine). This worker does the same work in one
process that stays: it asks the SuperNode's Runtime API for the next ClientApp
task, pulls the task's message, ``Context``, run and FAB, runs the ClientApp
(installed and loaded once per FAB), and pushes the reply and the ``Context``
back. The SuperNode keeps ``Context.state`` as always, so only module state
(the imported TensorFlow, a built model, a loaded partition) outlives a
message.

    flower-supernode ... --isolation process --port 9094     # or python -m deploy.supernode
    python -m deploy.clientapp_worker --runtime-api-address 127.0.0.1:9094 --insecure

The command is a supervisor: it runs the worker as a child process and starts
a new one if it dies (a crash, SIGKILL, running out of memory), but not when
the worker stopped on a mistake it named in one line (exit code 2, such as a
SuperNode that refuses its auth secret). The task the
dead worker held gets Flower's "ClientApp crashed" reply once its heartbeat
lapses (at most 60 s), so the server sends that step elsewhere. A run whose
FAB differs from the one the worker loaded (changed code) gets a fresh worker
process, so code that a previous run imported never runs again.

The app's modules come from its FAB, as in ``flwr-clientapp``: the worker
uses ``hl_flower.prompt_delivery`` only to shorten Flower's waits for message
parts, then drops every ``hl_flower`` module from ``sys.modules`` before it
loads an app.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from logging import ERROR, INFO, WARNING
from pathlib import Path

# First: hl_flower pins the numerical kernels (hl_flower.determinism) in the
# environment before flwr loads numpy, whose OpenBLAS reads its core type once.
import hl_flower  # noqa: F401  (dropped again in prepare_process)

# isort: split
import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import ClientApp, LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    AcquireTaskRequest,
    AcquireTaskResponse,
)
from flwr.supercore import log
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.inflatable.inflatable_utils import ObjectPushError
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from deploy.cli import OneLineParser, UsageError, run_main

DEFAULT_ADDRESS = "127.0.0.1:9094"  # flower-supernode's default Runtime API
POLL_INTERVAL = 0.02  # seconds between asks for a task after an empty answer
TOKEN_VARIABLE = "HL_WORKER_TASK_TOKEN"  # a task handed to a fresh worker (new FAB)
FIRST_RESTART_DELAY, MAX_RESTART_DELAY = 0.5, 30.0  # seconds; doubles while it keeps dying
STABLE_AFTER = 60.0  # seconds: a worker that lived this long restarts without delay
RECONNECT_WAIT = 2.0  # longest wait, in seconds, between asks to a SuperNode that is away


@dataclass(frozen=True)
class Connection:
    """How to reach the SuperNode's Runtime API."""

    address: str
    insecure: bool
    root_certificates: bytes | None = None  # the CA's PEM, read once
    superexec_auth_secret: bytes | None = None

    def client(self, *interceptors: object, retries: bool = True) -> RuntimeHttpClient:
        """A Runtime API client with ``interceptors`` and Flower's retries
        (which end the process on a refusal) unless ``retries`` is False."""
        return RuntimeHttpClient.from_server_address(
            server_address=self.address, insecure=self.insecure,
            root_certificates=self.root_certificates, interceptors=list(interceptors),
            retry_invoker=make_simple_http_retry_invoker() if retries else None)

    def task_acquirer(self) -> RuntimeHttpClient:
        """The client that asks for tasks, signed when the SuperNode wants it;
        without retries: :func:`next_task` handles a SuperNode that is away
        or refuses."""
        interceptors: list[object] = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
        if self.superexec_auth_secret:
            interceptors.append(SuperExecAuthHttpInterceptor(
                master_secret=self.superexec_auth_secret,
                protected_methods={"/flwr.proto.Runtime/AcquireTask"}))
        return self.client(*interceptors, retries=False)


class LoadedApp:
    """The ClientApp of one FAB, installed and imported once per process."""

    def __init__(self) -> None:
        self.fab_hash: str | None = None
        self.app: ClientApp | None = None
        self._load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)

    def serves(self, fab_hash: str) -> bool:
        """Whether a task of ``fab_hash`` can run here (nothing loaded, or the same FAB)."""
        return self.fab_hash is None or self.fab_hash == fab_hash

    def get(self, run: object, fab: object) -> ClientApp:
        """The app of ``fab``; installs and imports it on first use."""
        if self.app is None:
            install_from_fab(fab.content, skip_prompt=True)
            self.app = self._load(run.fab_id, run.fab_version, fab.hash_str)
            self.fab_hash = fab.hash_str
            log(INFO, "worker: loaded %s %s (FAB %s)", run.fab_id, run.fab_version,
                fab.hash_str[:12])
        elif fab.hash_str != self.fab_hash:
            raise LoadClientAppError(f"this worker holds FAB {self.fab_hash}, "
                                     f"not {fab.hash_str}")
        return self.app


@dataclass
class ClaimedTask:
    """The Runtime API client of one claimed task, and its heartbeat, beating
    from creation on: Flower drops a claim that goes 30 s without one (its
    task is handed out again, the token refused)."""

    client: RuntimeHttpClient
    heartbeat: HeartbeatSender

    @classmethod
    def beating(cls, connection: Connection, token: str) -> ClaimedTask:
        """The client for ``token``, its heartbeat started."""
        client = connection.client(
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token))
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        return cls(client, heartbeat)


def run_task(connection: Connection, token: str, loaded: LoadedApp,
             claim: ClaimedTask | None = None) -> None:
    """Run one ClientApp task: pull, call, push the reply, the Context and the status.

    A ClientApp that raises gets an error reply (as in ``flwr-clientapp``) and
    the Context it was given, unchanged. A reply the SuperNode no longer takes
    (``flwr stop`` mid-task ends its push session) is one warning, and the
    worker serves on. ``claim``: the task's client and heartbeat, when they
    were started before (a fresh worker's handed-over task).
    """
    claim = claim or ClaimedTask.beating(connection, token)
    client, heartbeat = claim.client, claim.heartbeat
    message: Message | None = None
    context: Context | None = None
    reply: Message | None = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, run, fab = pull_task_input(client)
        app = loaded.get(run, fab)
        reply = app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except Exception as ex:  # pylint: disable=broad-exception-caught
        log(ERROR, "ClientApp raised an exception", exc_info=ex)
        code = (ErrorCode.LOAD_CLIENT_APP_EXCEPTION if isinstance(ex, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
        details = f"{type(ex)}:<'{ex}'>"
        if message is not None:
            reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
        except (ObjectPushError, httpx.HTTPError) as err:
            log(WARNING, "worker: the reply was not taken (%s); its run was stopped, "
                "or its task ended, before it was sent", type(err).__name__)
        finally:
            push_task_output(client=client, context=context, sub_status=status,
                             details=details)
            heartbeat.stop()
            client.close()


def prepare_process(verbose: bool) -> None:
    """Flower's 1 s first wait for a message part becomes 0.005 s (as on the
    SuperNode); unless ``verbose``, TensorFlow (when installed) is imported
    now with its start-up banner hidden and its logs quiet, as in
    ``sim.py``. Then this project's modules are forgotten, so the app's FAB
    provides them."""
    from hl_flower.prompt_delivery import patch_object_pulls
    from hl_flower.quiet import import_tensorflow_quietly, quiet_environment

    patch_object_pulls()
    if not verbose:
        quiet_environment()
        if importlib.util.find_spec("tensorflow") is not None:
            import_tensorflow_quietly()
    for name in [name for name in sys.modules if name.split(".")[0] == "hl_flower"]:
        del sys.modules[name]


TLS_MISMATCH = ("the worker could not talk to the SuperNode's Runtime API at {address} "
                "({reason}); --insecure or --root-certificates must match the SuperNode: "
                "--insecure when it has no --ssl-certfile, else the CA that signed that "
                "certificate")


def next_task(acquirer: RuntimeHttpClient, address: str, reached: bool) -> AcquireTaskResponse:
    """Ask the SuperNode for a ClientApp task (it may hold the request open
    until one is there); wait while the SuperNode cannot be reached.

    Raises UsageError when the SuperNode refuses the worker (wrong secret),
    or TLS does not match (a certificate error; a connection dropped before
    any answer when the SuperNode was never ``reached``).
    """
    away = 0.0
    while True:
        try:
            return acquirer.AcquireTask(AcquireTaskRequest(
                supported_task_types=[TaskType.CLIENT_APP]))
        except httpx.HTTPStatusError as err:
            if err.response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
                raise UsageError(
                    f"the SuperNode at {address} refused to hand this worker tasks; give "
                    "the worker the file the SuperNode got as "
                    "--superexec-auth-secret-file") from None
            raise
        except httpx.TransportError as err:
            reason = str(err) or type(err).__name__
            if any(word in reason for word in ("SSL", "certificate", "TLS")) or (
                    not reached and isinstance(err, httpx.RemoteProtocolError)):
                raise UsageError(TLS_MISMATCH.format(address=address, reason=reason)) from None
            if away == 0.0:
                log(INFO, "worker: waiting for the SuperNode at %s", address)
            away = min(2 * away or 0.1, RECONNECT_WAIT)
            time.sleep(away)


def serve(connection: Connection, poll_interval: float, verbose: bool = False) -> None:
    """Take the SuperNode's ClientApp tasks one after another, forever."""
    handed_over = os.environ.pop(TOKEN_VARIABLE, None)
    # Its claim lives 30 s without a heartbeat; importing TensorFlow in
    # prepare_process can take longer than that on a loaded machine.
    claim = ClaimedTask.beating(connection, handed_over) if handed_over else None
    prepare_process(verbose)
    acquirer = connection.task_acquirer()
    loaded = LoadedApp()
    if handed_over:
        run_task(connection, handed_over, loaded, claim)
    reached = False
    while True:
        found = next_task(acquirer, connection.address, reached)
        if not reached:
            log(INFO, "worker: serving the SuperNode at %s", connection.address)
            reached = True
        if not (found.HasField("task") and found.token):
            time.sleep(poll_interval)
            continue
        if not loaded.serves(found.task.fab_hash):
            log(INFO, "worker: a run with other code (FAB %s); starting a fresh worker",
                found.task.fab_hash[:12])
            acquirer.close()
            os.execve(sys.executable, [sys.executable, "-m", __spec__.name, *sys.argv[1:]],
                      os.environ | {TOKEN_VARIABLE: found.token})
        run_task(connection, found.token, loaded)


def supervise(worker_command: list[str]) -> int:
    """Run ``worker_command`` and start it again whenever it dies, until SIGTERM/SIGINT."""
    stopping = False
    worker: subprocess.Popen | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = FIRST_RESTART_DELAY
    while not stopping:
        started = time.monotonic()
        worker = subprocess.Popen(worker_command)
        code = worker.wait()
        if stopping or code == 2:  # stopped, or a mistake the worker named in one line
            break
        lived = time.monotonic() - started
        delay = FIRST_RESTART_DELAY if lived > STABLE_AFTER else delay
        cause = f"signal {-code}" if code < 0 else f"exit code {code}"
        print(f"worker {worker.pid} died ({cause}) after {lived:.0f} s; "
              f"starting another in {delay:.1f} s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        delay = min(delay * 2, MAX_RESTART_DELAY)
    if worker is not None:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
    return 2 if worker is not None and worker.returncode == 2 else 0


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m deploy.clientapp_worker``."""
    p = OneLineParser(prog="python -m deploy.clientapp_worker",
                      description="Run a SuperNode's ClientApp messages in one long-lived "
                                  "process (start the SuperNode with --isolation process).")
    p.add_argument("--runtime-api-address", default=DEFAULT_ADDRESS,
                   help=f"the SuperNode's Runtime API, its --port (default {DEFAULT_ADDRESS})")
    security = p.add_mutually_exclusive_group(required=True)
    security.add_argument("--insecure", action="store_true",
                          help="plain HTTP to the Runtime API (the SuperNode has no "
                               "--ssl-certfile)")
    security.add_argument("--root-certificates", type=Path,
                          help="CA certificate of the Runtime API's TLS certificate")
    p.add_argument("--superexec-auth-secret-file", type=Path,
                   help="the file given to the SuperNode's --superexec-auth-secret-file")
    p.add_argument("--poll-interval", type=float, default=POLL_INTERVAL,
                   help=f"seconds from an empty answer to the next ask for a task "
                        f"(default {POLL_INTERVAL}); a SuperNode started with "
                        "python -m deploy.supernode holds each ask open up to 10 s, "
                        "Flower's own answers at once")
    p.add_argument("--verbose", action="store_true",
                   help="keep TensorFlow's start-up messages and logs")
    p.add_argument("--no-supervisor", action="store_true",
                   help="run the worker itself, without restarts (for a service manager "
                        "that restarts it)")
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    return p


def connection_of(args: argparse.Namespace) -> Connection:
    """The Connection the arguments describe; one-line refusal when a file is missing."""
    for flag, path in (("--root-certificates", args.root_certificates),
                       ("--superexec-auth-secret-file", args.superexec_auth_secret_file)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path} does not exist")
    if args.root_certificates is not None:
        try:
            ssl.create_default_context(cafile=str(args.root_certificates))
        except (ssl.SSLError, ValueError) as err:
            raise UsageError(f"--root-certificates {args.root_certificates} is not a PEM "
                             f"certificate ({err}); give the CA certificate that signed "
                             "the SuperNode's --ssl-certfile") from None
    if not 0.001 <= args.poll_interval <= 60:
        raise UsageError(f"--poll-interval must be between 0.001 and 60 seconds, "
                         f"got {args.poll_interval}")
    secret = (args.superexec_auth_secret_file.read_bytes()
              if args.superexec_auth_secret_file else None)
    certificates = args.root_certificates.read_bytes() if args.root_certificates else None
    return Connection(args.runtime_api_address, args.insecure, certificates, secret)


def main(argv: list[str] | None = None) -> int:
    """Supervise a worker (default), or be the worker (``--no-supervisor``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    connection = connection_of(args)
    if not args.no_supervisor:
        return supervise([sys.executable, "-m", __spec__.name, *argv,
                          "--no-supervisor", "--parent-pid", str(os.getpid())])
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    try:
        serve(connection, args.poll_interval, args.verbose)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
