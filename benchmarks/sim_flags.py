"""What the benchmarks that drive ``sim.py compare`` share: flags after ``--``
that the script gives sim.py itself are refused, and a sim.py that fails ends
the script with sim.py's own last line (its one-line error on a mistake)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# flag: (its dest in sim.py's parser, what to do instead)
Reserved = Mapping[str, tuple[str, str]]
# Where sim.py writes: every script here keeps its runs in a temporary folder.
TEMPORARY_OUTPUT: dict[str, tuple[str, str]] = {
    "--out": ("out", "drop it: the runs go to a temporary folder"),
    "--name": ("name", "drop it: the runs go to a temporary folder"),
}


def reserved_flag(extra: list[str], reserved: Reserved) -> str | None:
    """The first flag of ``reserved`` among ``extra``, read as sim.py reads
    them (abbreviations and --flag=value too). A flag sim.py does not know
    ends the script with sim.py's one-line error and exit code 2."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import sim

    parser = sim.build_parser("compare")
    parser.set_defaults(**{dest: None for dest, _ in reserved.values()})
    given = vars(parser.parse_args(extra))
    return next((flag for flag, (dest, _) in reserved.items() if given[dest] is not None),
                None)


def refusal(extra: list[str], reserved: Reserved) -> str | None:
    """The one-line error for a reserved flag among ``extra``, or None."""
    flag = reserved_flag(extra, reserved)
    if flag is None:
        return None
    return (f"error: {flag} after -- would override what the script gives sim.py; "
            f"{reserved[flag][1]}")


def run_sim(arguments: list[str]) -> subprocess.CompletedProcess:
    """Run ``python sim.py <arguments>`` in the project folder; if it fails,
    print its last stderr line and exit (2 if sim.py refused its input)."""
    done = subprocess.run([sys.executable, "sim.py", *arguments], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print((done.stderr.strip().splitlines() or [f"sim.py exited with {done.returncode}"])
              [-1], file=sys.stderr)
        raise SystemExit(2 if done.returncode == 2 else 1)
    return done
