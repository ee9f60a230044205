"""The bench's machinery runs (quick mode asserts no timings), so the bench cannot rot."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.webrtc


def test_bench_quick_mode_runs():
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ms/listener/s" in proc.stdout
    assert "router adds" in proc.stdout
