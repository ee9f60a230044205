"""Recording: every channel (the floor included) to Ogg/Opus from the already-encoded packets."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from router.media.engine import Engine, Feed
from router.monitoring.oggopus import OggOpusWriter

SAMPLES_PER_PACKET = 960
SESSION_NAME = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


class ChannelRecorder:
    """A PacketSink: writes each packet it is offered; gaps in pts advance the granule."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = OggOpusWriter(path, serial=secrets.randbits(32))
        self._last_pts: int | None = None

    def offer(self, packet: av.Packet) -> None:
        pts = int(packet.pts or 0)
        step = SAMPLES_PER_PACKET if self._last_pts is None else pts - self._last_pts
        self._last_pts = pts
        self._writer.write(bytes(packet), max(step, SAMPLES_PER_PACKET))

    def close(self) -> None:
        self._writer.close()


@dataclass
class Recording:
    name: str
    started: float
    recorders: dict[str, ChannelRecorder] = field(default_factory=dict)


class RecordingDesk:
    def __init__(self, engine: Engine, directory: Path) -> None:
        self._engine = engine
        self.directory = directory
        self.current: Recording | None = None

    def start(self) -> Recording:
        if self.current is not None:
            return self.current
        base = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name, n = base, 1
        while (self.directory / name).exists():
            n += 1
            name = f"{base}-{n}"
        folder = self.directory / name
        folder.mkdir(parents=True)
        rec = Recording(name=name, started=time.time())
        for channel in self._engine.settings.channels:
            recorder = ChannelRecorder(folder / f"{channel}.opus")
            rec.recorders[channel] = recorder
            self._engine.subscribe(recorder, Feed(channel))
        self.current = rec
        return rec

    def stop(self) -> Recording | None:
        rec = self.current
        if rec is None:
            return None
        for recorder in rec.recorders.values():
            self._engine.unsubscribe(recorder)
            recorder.close()
        self.current = None
        return rec

    def sessions(self) -> list[dict[str, object]]:
        if not self.directory.is_dir():
            return []
        out = []
        for folder in sorted(self.directory.iterdir(), reverse=True):
            if folder.is_dir() and SESSION_NAME.match(folder.name):
                files = sorted(p for p in folder.glob("*.opus"))
                out.append(
                    {
                        "name": folder.name,
                        "recording": self.current is not None and self.current.name == folder.name,
                        "files": [{"name": p.name, "bytes": p.stat().st_size} for p in files],
                    }
                )
        return out

    def file(self, session: str, name: str) -> Path | None:
        """A recorded file by its listed names; anything else (paths, dots) is not found."""
        if not SESSION_NAME.match(session) or not re.match(r"^[a-z0-9_-]+\.opus$", name):
            return None
        path = self.directory / session / name
        return path if path.is_file() else None
