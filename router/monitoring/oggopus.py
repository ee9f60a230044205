"""A minimal Ogg/Opus writer (RFC 7845) for packets that are already encoded.

Pages are written and flushed every few packets, so a file stays readable up to its last
page when the process is killed.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

PRE_SKIP = 312  # libopus's encoder delay at 48 kHz, as FFmpeg reports it
PACKETS_PER_PAGE = 10  # 200 ms: little overhead, little lost on a kill


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _lacing(size: int) -> bytes:
    return bytes([255] * (size // 255) + [size % 255])


class OggOpusWriter:
    def __init__(self, path: os.PathLike[str] | str, serial: int, channels: int = 1) -> None:
        self._file: BinaryIO = open(path, "wb")  # closed by close()
        self._serial = serial
        self._seq = 0
        self._pending: list[bytes] = []
        self._granule = PRE_SKIP
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, PRE_SKIP, 48000, 0, 0)
        tags = b"OpusTags" + struct.pack("<I", 13) + b"interp-router" + struct.pack("<I", 0)
        self._page([head], granule=0, flags=0x02)
        self._page([tags], granule=0, flags=0)
        self.packets = 0

    def write(self, packet: bytes, samples: int = 960) -> None:
        self._pending.append(packet)
        self._granule += samples
        self.packets += 1
        if len(self._pending) >= PACKETS_PER_PAGE:
            self._page(self._pending, self._granule, 0)
            self._pending = []

    def close(self) -> None:
        if self._file.closed:
            return
        self._page(self._pending, self._granule, 0x04)
        self._pending = []
        self._file.close()

    def _page(self, packets: list[bytes], granule: int, flags: int) -> None:
        segments = b"".join(_lacing(len(p)) for p in packets)
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self._serial, self._seq, 0, len(segments)
        )
        page = bytearray(header + segments + b"".join(packets))
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        self._file.write(page)
        self._file.flush()
        self._seq += 1
