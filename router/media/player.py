"""Media into the floor: any file PyAV can read (the video message: its audio), on command.

A `FilePlayback` is a block source the engine pulls once per tick, like a receive buffer: it
decodes a few blocks ahead, so playback is paced by the engine clock and cannot drift from the
other sources (no thread or timer with a clock of its own), and tests drive it with
`engine.tick()`. Only files directly inside the configured media folder can be played.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import av
import numpy as np

from router.media.engine import Engine, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK, BufferStats

SAMPLE_RATE = 48000
BLOCK_SECONDS = SAMPLES_PER_BLOCK / SAMPLE_RATE
MEDIA_SOURCE = "media"
log = logging.getLogger(__name__)


class MediaNotFound(LookupError):
    pass


class MediaUnplayable(ValueError):
    pass


class PlaybackState(StrEnum):
    IDLE = "idle"
    PLAYING = "playing"
    ENDED = "ended"
    STOPPED = "stopped"


class FilePlayback:
    """One file's first audio stream as 48 kHz mono float32 blocks, decoded as it is pulled."""

    def __init__(self, path: Path, loop: bool = False, read_ahead: int = 4) -> None:
        try:
            self._container = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise MediaUnplayable(f"{path.name}: cannot be read ({exc})") from None
        if not self._container.streams.audio:
            self._container.close()
            raise MediaUnplayable(f"{path.name}: has no audio")
        self._stream = self._container.streams.audio[0]
        self.name = path.name
        self.loop = loop
        self.duration = _duration(self._container, self._stream)
        self._read_ahead = read_ahead
        self._packets: Iterator[av.Packet] = self._container.demux(self._stream)
        self._resampler = _resampler(self._stream)
        self._pending = np.zeros(0, dtype=np.float32)
        self._ready: deque[np.ndarray] = deque()
        self._eof = False
        self._played = 0
        self._pass_samples = 0  # decoded in the current pass: an empty file must not loop
        self._closed = False
        self.decode_errors = 0
        self.state = PlaybackState.PLAYING
        self.stats = BufferStats()

    @property
    def depth(self) -> int:
        return len(self._ready)

    @property
    def position(self) -> float:
        """Seconds into the file (of the current pass, when looping)."""
        seconds = self._played * BLOCK_SECONDS
        if self.loop and self.duration:
            return seconds % self.duration
        return seconds if self.duration is None else min(seconds, self.duration)

    def pull(self) -> np.ndarray | None:
        if self.state is not PlaybackState.PLAYING:
            return None
        self._fill()
        if not self._ready:
            self.state = PlaybackState.ENDED
            self.close()
            return None
        self._played += 1
        self.stats.pulled += 1
        return self._ready.popleft()

    def stop(self) -> None:
        if self.state is PlaybackState.PLAYING:
            self.state = PlaybackState.STOPPED
        self.close()

    def close(self) -> None:
        self._ready.clear()
        if not self._closed:
            self._closed = True
            self._container.close()

    # --- decoding ------------------------------------------------------------------------

    def _fill(self) -> None:
        while len(self._ready) < self._read_ahead and not self._eof:
            packet = next(self._packets, None)
            if packet is None:
                self._end_of_file()
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                # A damaged packet costs its own audio only.
                self.decode_errors += 1
                log.warning("%s: skipping a packet that does not decode: %s", self.name, exc)
                continue
            for frame in frames:
                self._add(self._resampler.resample(frame))

    def _end_of_file(self) -> None:
        if self.loop and self._pass_samples > 0:
            # Seamless: the same resampler goes on into the next pass, as if the file went on.
            self._pass_samples = 0
            self._container.seek(0)
            self._stream.codec_context.flush_buffers()
            self._packets = self._container.demux(self._stream)
            return
        self._add(self._resampler.resample(None))
        if len(self._pending):
            tail = np.zeros(SAMPLES_PER_BLOCK, dtype=np.float32)
            tail[: len(self._pending)] = self._pending
            self._ready.append(tail)
            self._pending = np.zeros(0, dtype=np.float32)
        self._eof = True

    def _add(self, frames: list[av.AudioFrame]) -> None:
        # Mono as everywhere else in the router: the mean of the channels (FFmpeg's own
        # stereo downmix adds them at -3 dB, +3 dB louder for a dual-mono file).
        parts = [self._pending] + [f.to_ndarray().mean(axis=0) for f in frames]
        samples = np.concatenate(parts).astype(np.float32, copy=False)
        self._pass_samples += len(samples) - len(self._pending)
        whole = len(samples) // SAMPLES_PER_BLOCK * SAMPLES_PER_BLOCK
        for start in range(0, whole, SAMPLES_PER_BLOCK):
            self._ready.append(samples[start : start + SAMPLES_PER_BLOCK])
            self.stats.pushed += 1
        self._pending = samples[whole:]


def _resampler(stream: av.AudioStream) -> av.AudioResampler:
    # Planar float at 48 kHz; more than two channels (5.1) get FFmpeg's proper downmix.
    channels = stream.codec_context.layout.nb_channels
    name = stream.codec_context.layout.name
    layout = name if 0 < channels <= 2 and name else "mono"
    return av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)


def _duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


@dataclass(frozen=True)
class PlaybackStatus:
    state: PlaybackState
    file: str | None = None
    loop: bool = False
    position: float = 0.0  # seconds
    duration: float | None = None  # seconds, when the file says


class MediaDeck:
    """The technician's media player: one file at a time into the floor, loop off by default."""

    def __init__(self, engine: Engine, directory: Path) -> None:
        self._engine = engine
        self.directory = directory
        self._current: FilePlayback | None = None

    def files(self) -> list[str]:
        """Files that can be named in `play`: regular, visible files directly in the folder."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())

    async def play(self, name: str, loop: bool = False) -> PlaybackStatus:
        path = self._resolve(name)
        # Opening probes the file (disk reads, codec setup): keep it off the event loop.
        playback = await asyncio.to_thread(FilePlayback, path, loop)
        self._detach()
        self._current = playback
        self._engine.attach(MEDIA_SOURCE, SourceRole.MEDIA, playback)
        return self.status()

    def stop(self) -> PlaybackStatus:
        if self._current is not None:
            self._current.stop()
        self._detach(keep_status=True)
        return self.status()

    def status(self) -> PlaybackStatus:
        current = self._current
        if current is None:
            return PlaybackStatus(PlaybackState.IDLE)
        if current.state is not PlaybackState.PLAYING:
            self._detach(keep_status=True)  # ended by itself: nothing left to pull
        position = current.position
        if current.state is PlaybackState.ENDED and current.duration is not None:
            position = current.duration
        return PlaybackStatus(
            state=current.state,
            file=current.name,
            loop=current.loop,
            position=round(position, 3),
            duration=None if current.duration is None else round(current.duration, 3),
        )

    def close(self) -> None:
        if self._current is not None:
            self._current.stop()
        self._detach()

    def _detach(self, keep_status: bool = False) -> None:
        current = self._current
        if current is None:
            return
        self._engine.remove_source(MEDIA_SOURCE, current)
        if not keep_status:
            current.close()
            self._current = None

    def _resolve(self, name: str) -> Path:
        # Only a bare name of a file listed in the folder: never a path from the request.
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise MediaNotFound(f"{name!r} is not a file name in the media folder")
        if name not in self.files():
            raise MediaNotFound(f"no media file {name!r} (available: {', '.join(self.files())})")
        return self.directory / name
