"""A booth's text chat: its seats and the technicians, last messages only."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

CHAT_KEEP = 50
MAX_TEXT = 500


@dataclass(frozen=True)
class ChatMessage:
    seq: int
    at: float  # wall-clock seconds, for people
    sender: str  # a seat id, or "technician"
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "at": self.at, "from": self.sender, "text": self.text}


class ChatLog:
    def __init__(self, keep: int = CHAT_KEEP) -> None:
        self._messages: deque[ChatMessage] = deque(maxlen=keep)
        self._seq = 0

    def add(self, sender: str, text: str) -> ChatMessage:
        clean = " ".join(text.split())[:MAX_TEXT]
        if not clean:
            raise ValueError("an empty message")
        self._seq += 1
        message = ChatMessage(self._seq, time.time(), sender, clean)
        self._messages.append(message)
        return message

    def messages(self) -> list[dict[str, object]]:
        return [m.as_dict() for m in self._messages]
