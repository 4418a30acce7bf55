"""
Benchmark squeak against Squid with the shared harness (``make bench``).

The harness lives beside this checkout, in ``../shared/bench/`` (its
README.md describes the workloads and every figure).  This script only
assembles its command line: Squid as the reference preset, and squeak
started by the harness itself through ``--cmd`` with
``bench/squeak-bench.toml``, so that both proxies get CPU 0 alone, the same
origin and the same load, interleaved in ABBA order.

After the run it checks what the harness cannot: whether any measurement
failed, and whether squeak wrote a traceback or an unhandled error to its
stdout.log.  It exits non-zero if so, if the harness failed, or if the
harness is not there.

    .venv/bin/python bench/run.py                          # a-f, 3 repeats
    .venv/bin/python bench/run.py --repeats 1 --duration 3 --warmup 1   # smoke
    .venv/bin/python bench/run.py --workloads b -- --no-ab    # more harness options

An A/B of two commits: ``--against CHECKOUT`` adds a squeak subject run
from another checkout (its own ``.venv``, made by ``make venv`` there), on
its own port with its own cache and log, interleaved with this checkout's
squeak; the first one is then the reference.  Give the same checkout twice
to see the noise of this machine (two identical subjects) in the same run:

    .venv/bin/python bench/run.py --no-reference --workloads a,b,c,d,e \
        --against ../old --against ../old
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HARNESS = ROOT.parent / "shared" / "bench" / "run.sh"
CONFIG = HERE / "squeak-bench.toml"
RESULTS = HERE / "results"
PORT = 3130
LABEL = "squeak"
REFERENCE = "squid"

# a: 1 KiB memory HIT, b: 1 KiB no-store pass-through, c: 1 MiB memory HIT,
# d: 100 MiB stream + slow client, e: 100 MiB through CONNECT, f: memory per
# idle keep-alive connection.  bench/squeak-bench.toml sizes squeak's cache
# like the harness's Squid, so a and c compare memory hits with memory hits.
DEFAULT_WORKLOADS = "a,b,c,d,e,f"

# Lines in squeak's stdout.log that mean something went wrong.
_TROUBLE = re.compile(r"Traceback|Unhandled|\[-\] .*(?:Error|error|failed|Failure)")


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="harness workloads, a to f")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, help="seconds per wrk measurement (harness: 10)")
    ap.add_argument("--warmup", type=int, help="seconds of wrk warm-up (harness: 2)")
    ap.add_argument("--config", type=Path, default=CONFIG, help="squeak config (port 3130)")
    ap.add_argument(
        "--no-reference", action="store_true", help="measure squeak alone, without Squid"
    )
    ap.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKOUT",
        help="another squeak checkout to measure in the same run (A/B); repeatable",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also run bench/floor.py's answer and relay servers (the platform's floor)",
    )
    ap.add_argument("--harness", type=Path, default=HARNESS, help="the shared harness run.sh")
    ap.add_argument("--out", type=Path, help="results JSON (default bench/results/<time>.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the harness command and exit")
    return ap.parse_args(argv), extra


def _squeak_cmd(config: Path, twistd: Path | None = None) -> str:
    if twistd is None:
        twistd = Path(sys.executable).parent / "twistd"
    return shlex.join([str(twistd), "-n", "--pidfile=", "squeak", "--config", str(config)])


def _commit(checkout: Path) -> str:
    """
    The short commit of a checkout, with "+dirty" for local changes.
    """
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _other_subjects(
    checkouts: list[Path], config: Path, scratch: Path
) -> list[tuple[str, int, str]]:
    """
    One subject per C{--against} checkout: a label naming its commit, a port
    of its own (3131, 3132, ...) and the command running that checkout's
    twistd on a copy of C{config} rewritten for that port, with its own
    cache directory and access log.
    """
    text = config.read_text()
    subjects = []
    for index, checkout in enumerate(checkouts, start=1):
        checkout = checkout.resolve()
        twistd = checkout / ".venv" / "bin" / "twistd"
        if not twistd.exists():
            raise SystemExit(f"bench/run.py: no {twistd}; run `make venv` in {checkout}")
        port = PORT + index
        rewritten = (
            text.replace(f"127.0.0.1:{PORT}", f"127.0.0.1:{port}")
            .replace("/tmp/squeak-bench/cache", f"/tmp/squeak-bench/cache-{port}")
            .replace("squeak-access.log", f"squeak-access-{port}.log")
        )
        own = scratch / f"squeak-{port}.toml"
        own.write_text(rewritten)
        label = f"ab{index}-{_commit(checkout)}"
        subjects.append((label, port, _squeak_cmd(own, twistd)))
    return subjects


def _floor_subjects() -> list[tuple[str, int, str]]:
    """
    The two servers of bench/floor.py, on ports 3140 and 3141: what a Twisted
    process on this interpreter costs per small request with none of a
    proxy's work (a fixed answer; an unread relay to the origin).
    """
    floor = HERE / "floor.py"
    return [
        (
            f"floor-{mode}",
            port,
            shlex.join([sys.executable, str(floor), mode, f"127.0.0.1:{port}"]),
        )
        for mode, port in (("answer", 3140), ("relay", 3141))
    ]


def _versions() -> dict[str, str]:
    """
    What the harness does not record about squeak: its version, Twisted's,
    Python's and the checkout's commit (with "+dirty" for local changes).
    """
    out: dict[str, str] = {"python (squeak)": platform.python_version()}
    try:
        import squeak
        import twisted

        out["squeak"] = squeak.__version__
        out["twisted"] = twisted.__version__
    except ImportError as error:
        out["import"] = str(error)
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out["commit"] = rev
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        reactor = subprocess.run(
            [
                sys.executable,
                "-c",
                # The reactor twistd -n squeak runs on (squeak.tap's choice).
                "from squeak.net.eventloop import install_default; install_default(); "
                "from twisted.internet import reactor; print(type(reactor).__name__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out["reactor"] = reactor
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def _check(out: Path, labels: list[str]) -> int:
    """
    Report failed measurements and trouble in squeak's stdout.log; return
    the number of problems found.
    """
    try:
        data: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError) as error:
        print(f"bench/run.py: cannot read {out}: {error}", file=sys.stderr)
        return 1
    problems = 0
    for rec in data.get("runs", []):
        if "error" in rec:
            problems += 1
            print(
                f"bench/run.py: {rec['workload']} {rec['subject']} r{rec['repeat']} "
                f"failed: {rec['error']}",
                file=sys.stderr,
            )
    run_dir = Path(data.get("layout", {}).get("run_dir", "/nonexistent"))
    for label in labels:
        log = run_dir / label / "stdout.log"
        if not log.exists():
            print(f"bench/run.py: note: no squeak log at {log}", file=sys.stderr)
            continue
        bad = [line.rstrip() for line in log.open(errors="replace") if _TROUBLE.search(line)]
        if bad:
            problems += 1
            print(f"bench/run.py: {len(bad)} error line(s) in {log}; first ones:", file=sys.stderr)
            for line in bad[:10]:
                print(f"    {line}", file=sys.stderr)
    return problems


def main(argv: list[str]) -> int:
    args, extra = _parse(argv)
    harness = args.harness.resolve()
    if not harness.is_file():
        print(
            f"bench/run.py: the shared benchmark harness is not beside this checkout: "
            f"{harness} does not exist.\n"
            f"It is expected at ../shared/bench/run.sh relative to {ROOT}; "
            f"pass --harness PATH to use one elsewhere.",
            file=sys.stderr,
        )
        return 2
    config = args.config.resolve()
    if not config.is_file():
        print(f"bench/run.py: no squeak config at {config}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    who = LABEL if args.no_reference else f"{REFERENCE}-vs-{LABEL}"

    others = _other_subjects(args.against, config, RESULTS)
    floors = _floor_subjects() if args.floor else []
    if others:
        who = "-vs-".join([label for label, _, _ in others] + [who])
    out = (args.out or RESULTS / f"{stamp}_{who}.json").resolve()
    cmd = [str(harness)]
    if not args.no_reference:
        cmd += ["--subject", REFERENCE]
    for label, port, command in others + floors:
        cmd += ["--subject", f"{label}=127.0.0.1:{port}", "--cmd", f"{label}={command}"]
    cmd += [
        "--subject",
        f"{LABEL}=127.0.0.1:{PORT}",
        "--cmd",
        f"{LABEL}={_squeak_cmd(config)}",
        "--workloads",
        args.workloads,
        "--repeats",
        str(args.repeats),
        "--out",
        str(out),
    ]
    if not args.no_reference:
        cmd += ["--reference", REFERENCE]
    elif others:
        cmd += ["--reference", others[0][0]]
    if args.duration is not None:
        cmd += ["--duration", str(args.duration)]
    if args.warmup is not None:
        cmd += ["--warmup", str(args.warmup)]
    cmd += extra

    versions = _versions()
    print("bench/run.py: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("bench/run.py: " + shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    # The harness runs --cmd in its own working directory; start it (and so
    # squeak) from /tmp, so nothing squeak or twistd writes relative to the
    # working directory lands in the checkout.  Every path above is absolute.
    rc = subprocess.call(cmd, cwd="/tmp", env=os.environ.copy())
    if out.exists():
        data = json.loads(out.read_text())
        data["squeak_versions"] = versions
        out.write_text(json.dumps(data, indent=1))
    labels = [LABEL] + [label for label, _, _ in others]
    problems = _check(out, labels) if out.exists() else 1
    if rc != 0:
        print(f"bench/run.py: the harness exited with status {rc}", file=sys.stderr)
        return rc
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
