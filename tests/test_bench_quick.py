"""The bench's machinery runs (quick mode asserts no timings), so the bench cannot rot."""

import json
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


@pytest.mark.browser
def test_browser_cadence_runs(tmp_path):
    """What Chromium sends per listener besides media, beside what the load generator sends."""
    out = tmp_path / "cadence.json"
    proc = subprocess.run(
        [
            *(sys.executable, "bench/browser_cadence.py", "--seconds", "6"),
            *("--listeners", "1", "--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for kind in ("Chromium", "aiortc", "aiortc, as the load generator"):
        assert report[kind]["connections"] == 1, report
        # every listener checks its connection and reports on it: a count of zero would
        # mean the measurement missed the connection
        assert report[kind]["stun_requests_per_s"] + report[kind]["rtcp_per_s"] > 0, report
