#!/usr/bin/env python3
"""
Instructions per request of squeak's own request path, counted by
valgrind's callgrind: the measure a busy machine does not disturb.

Runs C{bench/hitpath.py --only hit} (or C{miss}) under callgrind twice, for
a small and a large number of requests, and divides the difference of the
two instruction counts by the difference of the requests, so that start-up
and imports cancel out.  Python's hash seed moves dictionary layouts and so
these counts by a few per cent, so each tree is counted with several seeds
(C{PYTHONHASHSEED} 0, 1, 2 by default) and the mean is reported.

Give C{--tree DIR} several times to compare trees (an export of a commit
made with C{git archive}, or another checkout): each runs this checkout's
virtualenv and this checkout's C{bench/hitpath.py}, with C{PYTHONPATH} set
to the tree, so that only squeak's code differs.

    .venv/bin/python bench/instructions.py --path hit
    .venv/bin/python bench/instructions.py --path miss --tree /tmp/base --tree .

User-space instructions only: the kernel's receive and send are not counted
(the shared harness measures those with the rest).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Requests in the short and the long run, per path: the difference is what
#: is counted (a miss costs about three hits, and callgrind is slow).
COUNTS = {"hit": (200, 1200), "miss": (100, 400)}


def instructions(tree: Path, path: str, requests: int, seed: int) -> int:
    """
    The total instructions callgrind counted for one run of hitpath.py.
    """
    with tempfile.TemporaryDirectory(prefix="squeak-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=str(tree))
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(HERE / "hitpath.py"),
            "--only",
            path,
            "--requests",
            str(requests if path == "hit" else requests * 4),
            "--repeats",
            "1",
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench/instructions.py: {' '.join(command)} failed:\n{done.stderr}")
        match = re.search(r"^summary:\s+(\d+)", out.read_text(errors="replace"), re.M)
        if match is None:
            raise SystemExit(f"bench/instructions.py: no summary line in {out}")
        return int(match.group(1))


def check_imports(tree: Path) -> None:
    """
    Make sure that C{squeak} imports from C{tree} with PYTHONPATH set to it
    (and not from the virtualenv's own checkout), or stop.
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    found = subprocess.run(
        [sys.executable, "-c", "import squeak; print(squeak.__file__)"],
        env=env,
        cwd="/",  # not the working directory, which -c puts first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree):
        raise SystemExit(f"bench/instructions.py: squeak imports from {found}, not from {tree}")


def per_request(tree: Path, path: str, seed: int) -> float:
    """
    Instructions per request for one tree and seed: the difference of a
    long and a short run over the difference of their requests.
    """
    short, long = COUNTS[path]
    return (instructions(tree, path, long, seed) - instructions(tree, path, short, seed)) / (
        long - short
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--path", choices=("hit", "miss"), default="hit")
    ap.add_argument("--tree", type=Path, action="append", help="tree to count (default: .)")
    ap.add_argument("--seeds", default="0,1,2", help="PYTHONHASHSEED values, comma-separated")
    args = ap.parse_args(argv)
    trees = [tree.resolve() for tree in (args.tree or [ROOT])]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    means = []
    for tree in trees:
        check_imports(tree)
        counts = [per_request(tree, args.path, seed) for seed in seeds]
        mean = statistics.fmean(counts)
        means.append(mean)
        shown = " · ".join(f"{count:,.0f}" for count in counts)
        ratio = f"  ({mean / means[0]:.3f} of the first)" if len(means) > 1 else ""
        print(f"{args.path} {tree}: {mean:,.0f} instructions/request (seeds: {shown}){ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
