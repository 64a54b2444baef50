"""Make SuperNode authentication keys and register them with the SuperLink.

    python -m deploy.supernode_keys create --nodes 4          # deploy/keys/supernode-0 ...
    python -m deploy.supernode_keys register local-secure     # every deploy/keys/*.pub

``create`` writes one key pair per SuperNode: ``supernode-<i>`` (the private
key, for ``flower-supernode --auth-supernode-private-key``; readable by the
owner only) and ``supernode-<i>.pub`` (the public key). They are ECDSA P-384
keys in OpenSSH format, the kind ``ssh-keygen -t ecdsa -b 384`` makes and
Flower expects.

``register`` hands every public key to the SuperLink of a Flower connection
with ``flwr supernode register`` (the SuperLink must be running with
``--enable-supernode-auth``). Only registered SuperNodes may then connect;
a SuperNode with any other key is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.cli import OneLineParser, UsageError, flower_executable, refuse_to_overwrite, run_main

DEFAULT_KEYS = Path("deploy/keys")
KEY_NAME = "supernode-{}"
REGISTER_TIMEOUT = 60.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def create_keys(out: Path, nodes: int, force: bool) -> list[Path]:
    """Write ``nodes`` key pairs into ``out``; return the public key files."""
    private = [out / KEY_NAME.format(i) for i in range(nodes)]
    public = [p.with_name(p.name + ".pub") for p in private]
    refuse_to_overwrite(private + public, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i, (private_path, public_path) in enumerate(zip(private, public, strict=True)):
            key = ec.generate_private_key(ec.SECP384R1())
            private_path.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption()))
            private_path.chmod(0o600)
            line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                 serialization.PublicFormat.OpenSSH)
            public_path.write_bytes(line + f" hl-flower-supernode-{i}\n".encode())
    except OSError as err:
        raise UsageError(f"cannot write into {out}: {err.strerror}") from None
    return public


def public_keys(folder: Path) -> list[Path]:
    """The ``*.pub`` files of ``folder``, in node order."""
    if not folder.is_dir():
        raise UsageError(f"key folder {folder} does not exist; make keys first with "
                         "python -m deploy.supernode_keys create --nodes N")
    keys = sorted(folder.glob("*.pub"), key=lambda p: _node_order(p.name))
    if not keys:
        raise UsageError(f"no *.pub key in {folder}; make keys first with "
                         "python -m deploy.supernode_keys create --nodes N")
    return keys


def _node_order(name: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", name)
    return (int(digits[-1]) if digits else -1, name)


def register_key(public_key: Path, connection: str | None) -> int:
    """Register one public key with ``flwr supernode register``; return the node id."""
    command = [flower_executable("flwr"), "supernode", "register", str(public_key)]
    command += [connection] if connection else []
    try:
        done = subprocess.run(command + ["--format", "json"], capture_output=True,
                              text=True, timeout=REGISTER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UsageError(f"flwr supernode register {public_key} got no answer in "
                         f"{REGISTER_TIMEOUT:.0f} s; is the SuperLink running?") from None
    answer = _json_answer(done.stdout)
    if done.returncode != 0 or not answer.get("success"):
        reason = _one_line(str(answer.get("error-message") or done.stderr or done.stdout))
        raise UsageError(f"could not register {public_key}: {reason}")
    return int(answer["node-id"])


def _json_answer(stdout: str) -> dict:
    """The JSON object ``flwr --format json`` printed (other lines may precede it)."""
    start = stdout.find("{")
    try:
        return json.loads(stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}


def _one_line(text: str) -> str:
    """Flower's multi-line, coloured message as one line, without the banner."""
    lines = [ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Using SuperLink")]
    return " ".join(lines) or "no output"


def main(argv: list[str] | None = None) -> int:
    """``create`` or ``register``."""
    parser = OneLineParser(prog="python -m deploy.supernode_keys",
                           description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make one key pair per SuperNode")
    create.add_argument("--nodes", type=int, required=True, help="how many SuperNodes")
    create.add_argument("--out", type=Path, default=DEFAULT_KEYS,
                        help=f"folder for the keys (default: {DEFAULT_KEYS})")
    create.add_argument("--force", action="store_true", help="replace existing keys")
    register = commands.add_parser("register", help="register every *.pub of a folder")
    register.add_argument("superlink", nargs="?", default=None,
                          help="name of the Flower connection (default: the default one)")
    register.add_argument("--keys", type=Path, default=DEFAULT_KEYS,
                          help=f"folder with the *.pub files (default: {DEFAULT_KEYS})")
    args = parser.parse_args(argv)
    if args.command == "create":
        if args.nodes < 1:
            raise UsageError(f"--nodes must be at least 1, got {args.nodes}")
        keys = create_keys(args.out, args.nodes, args.force)
        names = ", ".join(key.name[:-4] for key in keys)
        print(f"wrote {names} and their .pub files into {args.out}")
        return 0
    for key in public_keys(args.keys):
        print(f"registered {key} as SuperNode {register_key(key, args.superlink)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
