"""Demo mode: recorded speech for the floor and three booths, through the normal ingest path.

Each clip plays through aiortc's MediaPlayer, a track like any received WebRTC track, into the
same consume_track -> SourceBuffer path; the booth seats are connected and put live through the
booth board exactly as a real interpreter's mic button would.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.resources import files
from pathlib import Path

from aiortc.contrib.media import MediaPlayer

from router.control.booths import seat_source_id
from router.media.engine import SourceRole
from router.media.ingest import consume_track
from router.runtime import EventRuntime

CLIPS = Path(str(files("router.demo"))) / "clips"
FLOOR_CLIP = "floor_en.opus"


def booth_clip(booth: str) -> Path:
    return CLIPS / f"booth_{booth}.opus"


class DemoSources:
    def __init__(self, rt: EventRuntime) -> None:
        self._rt = rt
        self._players: list[MediaPlayer] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._play(CLIPS / FLOOR_CLIP, "room", SourceRole.ROOM)
        floor_language = self._rt.config.event.floor_language
        for booth_id, booth in self._rt.config.booths.items():
            clip = booth_clip(booth_id)
            language = self._rt.config.channels[booth.channel].language
            if not clip.exists() or language == floor_language:
                continue  # this booth's language is on the floor: its channel carries the floor
            seat = booth.seats[0]
            self._play(clip, seat_source_id(booth_id, seat), SourceRole.SEAT)
            self._rt.board.set_connected(booth_id, seat, True)
            self._rt.board.set_mic(booth_id, seat, True)

    def _play(self, clip: Path, source_id: str, role: SourceRole) -> None:
        player = MediaPlayer(str(clip), loop=True)
        buffer = self._rt.engine.add_source(source_id, role)
        self._players.append(player)
        assert player.audio is not None
        self._tasks.append(asyncio.create_task(consume_track(player.audio, buffer)))

    async def stop(self) -> None:
        for player in self._players:
            if player.audio is not None:
                player.audio.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
