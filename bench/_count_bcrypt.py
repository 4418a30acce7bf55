"""
twistd, with bcrypt.checkpw wrapped to count its calls (bench/auth_bench.py).

    python bench/_count_bcrypt.py -n --pidfile= squeak --config FILE

The count is written to the file named by $SQUEAK_BENCH_BCRYPT_COUNT after
every call; squeak itself is not changed.
"""

import os
import sys
import threading

import bcrypt

_path = os.environ["SQUEAK_BENCH_BCRYPT_COUNT"]
_lock = threading.Lock()
_count = 0
_checkpw = bcrypt.checkpw


def checkpw(password: bytes, hashed_password: bytes) -> bool:
    global _count
    with _lock:
        _count += 1
        with open(_path, "w") as f:
            f.write(f"{_count}\n")
    return _checkpw(password, hashed_password)


bcrypt.checkpw = checkpw

from twisted.scripts.twistd import run  # noqa: E402

sys.argv = ["twistd", *sys.argv[1:]]
run()  # type: ignore[no-untyped-call]
