"""Make a local certificate authority and a SuperLink certificate for TLS.

    python -m deploy.make_certs                       # 127.0.0.1 and localhost
    python -m deploy.make_certs --host 192.168.1.20   # also that address
    python -m deploy.make_certs --out /secure/place --days 30

Writes, into ``--out`` (default ``deploy/certificates``):

- ``ca.crt`` and ``ca.key``: the certificate authority. Every SuperNode and the
  ``flwr`` command need ``ca.crt`` to trust the SuperLink
  (``flower-supernode --root-certificates ca.crt``, ``root-certificates`` in
  the Flower connection). Keep ``ca.key`` to yourself.
- ``server.pem`` and ``server.key``: the SuperLink's certificate, signed by the
  authority and valid for 127.0.0.1, localhost and every ``--host``
  (``flower-superlink --ssl-ca-certfile ca.crt --ssl-certfile server.pem
  --ssl-keyfile server.key``).

Flower 1.42 uses no client certificates: a SuperNode proves who it is with
its authentication key (``python -m deploy.supernode_keys``). This is for a
local test; a deployment reachable from outside wants a real authority.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.cli import OneLineParser, UsageError, refuse_to_overwrite, run_main

DEFAULT_OUT = Path("deploy/certificates")
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
KEY_BITS = 2048
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
FILES = ("ca.crt", "ca.key", "server.pem", "server.key")


def subject_name(host: str) -> x509.GeneralName:
    """An IP address or DNS name for the certificate's subject alternative names."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not HOSTNAME.match(host):
        raise UsageError(f"--host {host!r} is neither an IP address nor a host name")
    return x509.DNSName(host)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days))


def make_authority(days: int) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A self-signed certificate authority that may sign server certificates."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HL-Flower local CA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, encipher_only=False,
                   decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    return key, _validity(builder, days).sign(key, hashes.SHA256())


def make_server_certificate(ca_key: rsa.RSAPrivateKey, ca: x509.Certificate,
                            hosts: list[str], days: int
                            ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The SuperLink's certificate, valid for ``hosts``, signed by ``ca``."""
    key = _new_key()
    names = [subject_name(h) for h in dict.fromkeys(hosts)]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_encipherment=True, key_cert_sign=False,
                   crl_sign=False, content_commitment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    return key, _validity(builder, days).sign(ca_key, hashes.SHA256())


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def write_certificates(out: Path, hosts: list[str], days: int, force: bool) -> list[Path]:
    """Write the four files into ``out``; private keys are readable by the owner only."""
    for host in hosts:
        subject_name(host)  # check every name before writing anything
    refuse_to_overwrite([out / name for name in FILES], force)
    ca_key, ca = make_authority(days)
    server_key, server = make_server_certificate(ca_key, ca, hosts, days)
    contents = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _key_pem(ca_key),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _key_pem(server_key),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            path = out / name
            path.write_bytes(data)
            path.chmod(0o600 if name.endswith(".key") else 0o644)
    except OSError as err:
        raise UsageError(f"cannot write into {out}: {err.strerror}") from None
    return [out / name for name in FILES]


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, write the files, say what goes where."""
    parser = OneLineParser(prog="python -m deploy.make_certs", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the files (default: {DEFAULT_OUT})")
    parser.add_argument("--host", action="append", default=[],
                        help="another address or name the SuperLink is reached by "
                             "(repeatable; 127.0.0.1 and localhost are always in)")
    parser.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    if args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    hosts = list(DEFAULT_HOSTS) + args.host
    paths = write_certificates(args.out, hosts, args.days, args.force)
    print(f"wrote {', '.join(str(p) for p in paths)} (valid for {', '.join(hosts)})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
