"""How often aiortc's senders and receivers send RTCP reports.

aiortc reports from every sender and every receiver every 0.5-1.5 s: the loops in
`RTCRtpSender._run_rtcp` and `RTCRtpReceiver._run_rtcp` sleep `0.5 + random.random()`
seconds, through their modules' `random`, which those modules use for nothing else (the one
seam there is). libwebrtc reports audio every 5 s on average (`kDefaultAudioReportInterval`,
randomised to 2.5-7.5 s), the interval RFC 3550 (6.2) recommends as the minimum. With
hundreds of listeners aiortc's cadence costs the router a good part of its CPU outside the
tick (docs/PERFORMANCE.md), so the router reports at libwebrtc's by default
(`[audio] rtcp_report_interval`).
"""

from __future__ import annotations

import random

from aiortc import rtcrtpreceiver, rtcrtpsender


class ReportInterval:
    """Stands in for `random` in aiortc's RTCP loops: their `0.5 + random()` is then uniform
    over 0.5-1.5 times `mean` seconds."""

    def __init__(self, mean: float) -> None:
        if mean < 1.0:
            raise ValueError("the mean report interval must be at least aiortc's own 1 s")
        self.mean = mean

    def random(self) -> float:
        return self.mean * (0.5 + random.random()) - 0.5


def set_report_interval(mean: float | None) -> None:
    """Every aiortc sender and receiver in this process reports every `mean` s on average
    from its next report on (None: aiortc's 1 s). Process-wide, like the jitter buffer."""
    stand_in = random if mean is None else ReportInterval(mean)
    rtcrtpsender.random = stand_in  # type: ignore[assignment]
    rtcrtpreceiver.random = stand_in  # type: ignore[assignment]
