"""Media into the floor: any PyAV-readable file, paced by the engine tick, on command."""

import numpy as np
import pytest

from router.app import create_app
from router.config import MediaSettings
from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, Feed, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from router.media.player import (
    MEDIA_SOURCE,
    FilePlayback,
    MediaDeck,
    MediaNotFound,
    MediaUnplayable,
    PlaybackState,
)
from tests.conftest import start_server
from tests.media_files import heard_db, write_video, write_wav
from tests.signals import decode_packets, sine, tone_amplitude, tone_db
from tests.webrtc_clients import listen

ROOM_HZ, MEDIA_HZ, VIDEO_HZ = 440.0, 330.0, 550.0
TECH = {"Authorization": "Bearer technician-demo-token"}


class Collector:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


def play_out(playback: FilePlayback, limit: int = 10_000) -> np.ndarray:
    blocks = []
    for _ in range(limit):
        block = playback.pull()
        if block is None:
            break
        blocks.append(block)
    return np.concatenate(blocks)


@pytest.mark.parametrize("kind", ["wav", "video"])
def test_a_file_plays_once_at_48k_mono_and_ends(tmp_path, kind):
    if kind == "wav":
        path, freq = write_wav(tmp_path / "tone.wav", MEDIA_HZ, 1.0), MEDIA_HZ
    else:
        path, freq = write_video(tmp_path / "message.mp4", VIDEO_HZ, 1.0), VIDEO_HZ
    playback = FilePlayback(path)
    assert playback.duration == pytest.approx(1.0, abs=0.05)
    audio = play_out(playback)
    # 44.1 kHz stereo became 48 kHz mono: the same tone, the same length, the same level
    assert len(audio) / 48000 == pytest.approx(1.0, abs=0.05)
    assert tone_amplitude(audio[4800:43200], freq) == pytest.approx(0.3, rel=0.05)
    assert playback.state is PlaybackState.ENDED
    assert playback.position == pytest.approx(1.0, abs=0.05)


def test_loop_plays_on_without_a_gap(tmp_path):
    playback = FilePlayback(write_wav(tmp_path / "tone.wav", 1000.0, 0.5), loop=True)
    audio = play_out(playback, limit=100)  # 2 s from a 0.5 s file
    assert len(audio) == 100 * SAMPLES_PER_BLOCK and playback.state is PlaybackState.PLAYING
    assert playback.position < 0.5
    # 1 kHz has a whole number of periods in 0.5 s: the seams are as smooth as the sine
    steps = np.abs(np.diff(audio[SAMPLES_PER_BLOCK:]))  # after the resampler's start
    assert steps.max() < 0.3 * 2 * np.pi * 1000 / 48000 * 1.05


def test_files_that_are_not_media_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(MediaUnplayable):
        FilePlayback(tmp_path / "notes.txt")


def engine_with_room() -> Engine:
    engine = Engine(
        EngineSettings(
            channels=("floor", "en", "fr"), languages={"en": "en", "fr": "fr"}, floor_language="en"
        ),
        ManualClock(),
    )
    engine.add_source("room", SourceRole.ROOM)
    return engine


async def test_deck_plays_into_the_floor_and_stops_on_command(tmp_path):
    write_wav(tmp_path / "message.wav", MEDIA_HZ, 3.0)
    engine = engine_with_room()
    deck = MediaDeck(engine, tmp_path)
    floor, fr = Collector(), Collector()
    engine.subscribe(floor, Feed("floor"))
    engine.subscribe(fr, Feed("fr"))
    room = engine.buffer("room")
    tick = 0

    def run(count: int) -> dict[str, np.ndarray]:
        nonlocal tick
        marks = (len(floor.packets), len(fr.packets))
        for _ in range(count):
            room.push(sine(ROOM_HZ, SAMPLES_PER_BLOCK, 0.2, tick * SAMPLES_PER_BLOCK))
            engine.tick(tick)
            tick += 1
        return {
            "floor": decode_packets(floor.packets[marks[0] :])[4800:],
            "fr": decode_packets(fr.packets[marks[1] :])[4800:],
        }

    assert deck.files() == ["message.wav"]
    assert deck.status().state is PlaybackState.IDLE
    before = run(25)
    assert tone_db(before["floor"], MEDIA_HZ) < -50

    status = await deck.play("message.wav")
    assert status.state is PlaybackState.PLAYING and status.loop is False
    assert status.duration == pytest.approx(3.0, abs=0.05)
    assert engine.role(MEDIA_SOURCE) is SourceRole.MEDIA
    playing = run(50)  # one second, paced by the engine's ticks
    for ch in ("floor", "fr"):  # the floor, and every channel carrying it (FR: nobody live)
        assert tone_db(playing[ch], MEDIA_HZ) > -16, ch
        assert tone_db(playing[ch], ROOM_HZ) > -20, ch
    assert deck.status().position == pytest.approx(1.0, abs=0.05)

    stopped = deck.stop()
    assert stopped.state is PlaybackState.STOPPED and stopped.file == "message.wav"
    assert not engine.has_source(MEDIA_SOURCE)
    after = run(25)
    assert tone_db(after["floor"], MEDIA_HZ) < -50, "stops at the next tick"
    assert tone_db(after["floor"], ROOM_HZ) > -20, "the floor goes on"

    # played to the end without loop: it ends by itself and leaves the engine
    await deck.play("message.wav")
    run(160)
    status = deck.status()
    assert status.state is PlaybackState.ENDED and status.position == pytest.approx(3.0, abs=0.05)
    assert not engine.has_source(MEDIA_SOURCE)


@pytest.mark.parametrize(
    "name", ["../secret.wav", "/etc/passwd", "sub/x.wav", ".hidden.wav", "missing.wav", ""]
)
async def test_deck_plays_only_files_of_its_folder(tmp_path, name):
    folder = tmp_path / "media"
    folder.mkdir()
    write_wav(folder / "ok.wav", MEDIA_HZ, 0.2)
    write_wav(tmp_path / "secret.wav", MEDIA_HZ, 0.2)
    write_wav(folder / ".hidden.wav", MEDIA_HZ, 0.2)
    (folder / "sub").mkdir()
    write_wav(folder / "sub" / "x.wav", MEDIA_HZ, 0.2)
    deck = MediaDeck(engine_with_room(), folder)
    assert deck.files() == ["ok.wav"]
    with pytest.raises(MediaNotFound):
        await deck.play(name)


@pytest.fixture
async def media_server(event_config, loopback_ice, tmp_path):
    write_wav(tmp_path / "message.wav", MEDIA_HZ, 30.0)
    write_video(tmp_path / "video_message.mp4", VIDEO_HZ, 2.0)
    (tmp_path / "notes.txt").write_text("not audio")
    config = event_config.model_copy(update={"media": MediaSettings(directory=tmp_path)})
    app = create_app(config, ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield app.state.runtime, http
    srv.should_exit = True
    await task


@pytest.mark.webrtc
async def test_media_api_plays_to_listeners_and_stops(media_server):
    _, http = media_server
    r = await http.get("/api/media", headers=TECH)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "files": ["message.wav", "notes.txt", "video_message.mp4"],
        "playback": {
            "state": "idle",
            "file": None,
            "loop": False,
            "position": 0.0,
            "duration": None,
        },
    }
    floor = await listen(http, "floor")
    en = await listen(http, "en")  # the floor language's channel carries the floor
    try:
        r = await http.post("/api/media/play", json={"file": "message.wav"}, headers=TECH)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "playing" and r.json()["loop"] is False
        assert r.json()["duration"] == pytest.approx(30.0, abs=0.05)
        for peer in (floor, en):
            await peer.heard.wait_for(peer.heard.mark() + 20)
            assert heard_db(await peer.heard.collect(40), MEDIA_HZ) > -20
        position = (await http.get("/api/media", headers=TECH)).json()["playback"]["position"]
        assert 0.5 < position < 30

        r = await http.post("/api/media/stop", headers=TECH)
        assert r.status_code == 200 and r.json()["state"] == "stopped"
        await floor.heard.collect(10)  # what was in flight
        assert heard_db(await floor.heard.collect(40), MEDIA_HZ) < -50

        # the video message: its audio track
        r = await http.post(
            "/api/media/play", json={"file": "video_message.mp4", "loop": True}, headers=TECH
        )
        assert r.status_code == 200 and r.json()["loop"] is True
        await floor.heard.collect(10)
        assert heard_db(await floor.heard.collect(40), VIDEO_HZ) > -20
    finally:
        await floor.close()
        await en.close()


async def test_media_api_errors(media_server):
    rt, http = media_server
    play = "/api/media/play"
    assert (await http.get("/api/media")).status_code == 401
    floor_token = {"Authorization": "Bearer floor-demo-token"}
    r = await http.post(play, json={"file": "message.wav"}, headers=floor_token)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    for name in ("../event.toml", "nope.wav"):
        r = await http.post(play, json={"file": name}, headers=TECH)
        assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
    r = await http.post(play, json={"file": "notes.txt"}, headers=TECH)
    assert r.status_code == 400 and "notes.txt" in r.json()["detail"]
    r = await http.post(play, json={"file": "message.wav", "loop": "sometimes"}, headers=TECH)
    assert r.status_code == 400
    r = await http.post(play, content=b"{", headers={**TECH, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert not rt.engine.has_source(MEDIA_SOURCE), "nothing was played by a refused request"
