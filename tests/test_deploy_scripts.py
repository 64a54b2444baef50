"""The deploy scripts: what they write, and one line plus exit code 2 for mistakes.

No Flower process is started here (tests/test_deployment.py does that).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.cli.supernode.register import try_load_public_key

from deploy import local
from deploy.local import LOWEST_PORT, ephemeral_ports, free_port, free_ports_in_a_row

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"deploy.{name}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_certificates_for_loopback_and_extra_hosts(tmp_path: Path) -> None:
    done = script("make_certs", "--out", str(tmp_path), "--host", "10.1.2.3",
                  "--host", "link.example")
    assert done.returncode == 0, done.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")}
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "link.example"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in ("ca.key", "server.key"):
        assert (tmp_path / key).stat().st_mode & 0o077 == 0, key


def test_supernode_keys_are_what_flower_loads(tmp_path: Path) -> None:
    done = script("supernode_keys", "create", "--nodes", "3", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    public = sorted(tmp_path.glob("*.pub"))
    assert [p.name for p in public] == [f"supernode-{i}.pub" for i in range(3)]
    for i, public_key in enumerate(public):
        private = load_ssh_private_key((tmp_path / f"supernode-{i}").read_bytes(), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.curve.name == "secp384r1"
        assert (tmp_path / f"supernode-{i}").stat().st_mode & 0o077 == 0
        assert try_load_public_key(public_key)  # what `flwr supernode register` reads
    keys = [(tmp_path / f"supernode-{i}.pub").read_text() for i in range(3)]
    assert len(set(keys)) == 3


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    assert script("make_certs", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "ca.crt").read_bytes()
    again = script("make_certs", "--out", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert script("make_certs", "--out", str(tmp_path), "--force").returncode == 0
    assert (tmp_path / "ca.crt").read_bytes() != before


@pytest.mark.parametrize(("name", "args", "expected"), [
    ("make_certs", ["--host", "not a host!"], "neither an IP address nor a host name"),
    ("make_certs", ["--days", "0"], "--days"),
    ("make_certs", ["--out", "{file}/certificates"], "cannot write"),
    ("supernode_keys", [], "required"),
    ("supernode_keys", ["create", "--nodes", "0"], "--nodes"),
    ("supernode_keys", ["register", "--keys", "/no/such/folder"], "does not exist"),
    ("start_supernodes", ["--nodes", "2"], "--insecure --root-certificates"),
    ("start_supernodes", ["--nodes", "2", "--insecure", "--keys", "/no/such",
                          "--first-port", "{free}"], "no private key"),
    ("start_supernodes", ["--nodes", "2", "--root-certificates", "/no/ca.crt",
                          "--first-port", "{free}"], "does not exist"),
    ("start_supernodes", ["--nodes", "0", "--insecure"], "--nodes"),
    ("start_supernodes", ["--nodes", "two", "--insecure"], "invalid int"),
    ("start_supernodes", ["--nodes", "2", "--insecure", "--first-port", "{busy}"],
     "is in use"),
    ("supernode", ["--port", "notaport"], "argument --port"),
    ("superlink", ["--badflag"], "unrecognized arguments: --badflag"),
])
def test_mistakes_are_one_line_and_exit_2(name: str, args: list[str], expected: str,
                                          tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.format(file=tmp_path / "file", busy=busy.getsockname()[1],
                         free=free_ports_in_a_row(2))  # not the default 9094: maybe in use
                for a in args]
        out = ["--out", str(tmp_path)] if name == "make_certs" and "--out" not in args else []
        done = script(name, *args, *out)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and expected in lines[0]


def test_register_without_a_superlink_is_one_line(tmp_path: Path) -> None:
    """A connection to a port where nothing listens: a clear line, no traceback."""
    assert script("supernode_keys", "create", "--nodes", "1", "--out",
                  str(tmp_path / "keys")).returncode == 0
    home = tmp_path / "flwr"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "nowhere"\n\n[superlink.nowhere]\n'
        'address = "127.0.0.1:9"\ninsecure = true\n')
    done = subprocess.run(
        [sys.executable, "-m", "deploy.supernode_keys", "register", "--keys",
         str(tmp_path / "keys")], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "FLWR_HOME": str(home),
             "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_TELEMETRY_ENABLED": "0"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not register"), done.stderr


def test_free_ports_are_bindable_and_outside_the_kernels_own_range() -> None:
    """Ports the kernel gives outgoing connections can be taken between the
    pick and the bind (a SuperNode then fails to start): picks avoid them."""
    low, _ = ephemeral_ports()
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # random picks, not one fixed port
    for port in ports:
        assert LOWEST_PORT <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))


def test_ports_in_a_row_stay_below_the_kernels_own_range(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A row starting just below the ephemeral range would run into it:
    such a start is passed over."""
    low, _ = ephemeral_ports()
    picks = iter([low - 2, low - 2, LOWEST_PORT + 100])
    monkeypatch.setattr(local, "free_port", lambda host: next(picks))
    monkeypatch.setattr(local, "busy_port", lambda *_args: None)  # every port free
    assert free_ports_in_a_row(4) == LOWEST_PORT + 100


class ExitingNode:
    """Stands in for a SuperNode process that exits after ``looks`` checks."""

    def __init__(self, name: str, looks: int) -> None:
        self.name, self.looks = name, looks

    def running(self) -> bool:
        self.looks -= 1
        return self.looks > 0

    def log(self) -> str:
        return "401 Unauthorized"


def test_every_exit_is_reported_the_last_one_too(capsys: pytest.CaptureFixture) -> None:
    from deploy.start_supernodes import report_exits

    report_exits([ExitingNode("supernode-0", 1), ExitingNode("supernode-1", 3)], pause=0.01)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" exited: ")[0] for line in lines] == ["supernode-0", "supernode-1"]
