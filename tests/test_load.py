"""The bounded load run (issue 11, item 4): 50 HLS players for 15 s against a real
`videoflix dev` in a child process while an upload transcodes; zero errors allowed.
The full run (200 players, 60 s) is `python bench/load.py`; figures in BENCHMARKS.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.load
@pytest.mark.slow
def test_fifty_players_for_fifteen_seconds_see_no_errors_while_transcoding():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--players", "50", "--seconds", "15"],
                          capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOAD ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(lines[-1][5:])
    assert report["errors"] == 0, report["error_samples"]
    assert report["segments"] >= 50 * 3, report  # every player filled its buffer at least
    assert done.returncode == 0
