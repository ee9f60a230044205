"""Recording: one Ogg/Opus file per channel from the encoded packets, readable after SIGKILL."""

import signal
import subprocess
import sys
import textwrap

import av
import numpy as np

from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, SourceRole
from router.monitoring.recorder import RecordingDesk
from tests.conftest import ROOT
from tests.signals import sine, tone_db

CHANNELS = ("floor", "en", "fr")


def decode_file(path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name in ("opus", "libopus")
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    return np.concatenate(frames).astype(np.float32)


def make_engine() -> Engine:
    engine = Engine(EngineSettings(channels=CHANNELS), ManualClock())
    engine.add_source("room", SourceRole.ROOM)
    engine.add_source("seat:fr:fr1", SourceRole.SEAT)
    engine.set_live("fr", "seat:fr:fr1")
    return engine


def run(engine: Engine, ticks: int) -> None:
    for t in range(ticks):
        engine.buffer("room").push(sine(440, 960, 0.3, t * 960))
        engine.buffer("seat:fr:fr1").push(sine(660, 960, 0.3, t * 960))
        engine.tick(t)


def test_each_channel_is_recorded_with_its_own_content(tmp_path):
    engine = make_engine()
    desk = RecordingDesk(engine, tmp_path)
    rec = desk.start()
    encodes_before = engine.stats.encodes
    run(engine, 150)
    desk.stop()
    # one encode per channel per tick, shared with listeners: recording encodes nothing more
    assert engine.stats.encodes - encodes_before == 150 * len(CHANNELS)
    files = {p.name for p in (tmp_path / rec.name).iterdir()}
    assert files == {f"{c}.opus" for c in CHANNELS}
    for channel in CHANNELS:
        pcm = decode_file(tmp_path / rec.name / f"{channel}.opus")[4800:]
        assert len(pcm) > 48000 * 2.5
        if channel == "fr":
            assert tone_db(pcm, 660) > -16 and tone_db(pcm, 440) < -25
        else:
            assert tone_db(pcm, 440) > -16 and tone_db(pcm, 660) < -50
    listed = desk.sessions()
    assert listed[0]["name"] == rec.name and not listed[0]["recording"]
    assert desk.file(rec.name, "fr.opus") is not None
    assert desk.file(rec.name, "../fr.opus") is None
    assert desk.file("..", "fr.opus") is None


def test_files_stay_readable_after_sigkill(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from router.monitoring.recorder import RecordingDesk
        from tests.test_recording import make_engine, run
        engine = make_engine()
        desk = RecordingDesk(engine, Path({str(tmp_path)!r}))
        desk.start()
        run(engine, 120)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (folder,) = list(tmp_path.iterdir())
    for channel in CHANNELS:
        pcm = decode_file(folder / f"{channel}.opus")
        assert len(pcm) >= 48000 * 2.0  # all complete pages: at most 200 ms lost
        tone = 660 if channel == "fr" else 440
        assert tone_db(pcm[4800:], tone) > -16
