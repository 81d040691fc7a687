"""Benchmark-sized fuzz: the schemathesis run of tests/test_openapi.py with a large budget.

    python bench/fuzz.py [--examples 300] [--seed N]

Runs the same test as `make test` (real PostgreSQL, Redis and SMTP started by the test
fixtures, the live application, a user's Bearer token, checks: no 5xx, status codes,
content types and bodies as documented) with --examples cases per operation instead
of 12, and a random seed unless one is given. Prints the cases run, the seed and the
wall time; exits non-zero on any failure (schemathesis prints how to reproduce it).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=random.randrange(1, 2**31))
    args = parser.parse_args()
    env = {**os.environ, "VIDEOFLIX_FUZZ_EXAMPLES": str(args.examples), "VIDEOFLIX_FUZZ_SEED": str(args.seed),
           "VIDEOFLIX_FUZZ_TIMEOUT": "7200"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/test_openapi.py::test_schemathesis_finds_no_server_error_and_no_schema_mismatch"],
        cwd=ROOT, env=env, check=False,
    )
    print(f"fuzz: {args.examples} examples per operation, seed {args.seed}, "
          f"{time.monotonic() - started:.0f} s, exit {done.returncode}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
