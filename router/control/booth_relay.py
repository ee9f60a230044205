"""Which channel a seat hears: the floor, a chosen channel, or "auto" (floor or relay).

Pure: the board passes what it knows. With auto-relay on, a seat on "auto" hears the floor when
its booth understands the floor language; otherwise it hears the channel of a booth that is live
from the floor (the pivot) in a language it understands. Floor Nepali: the EN booth interprets
from the floor, and the FR and ES booths hear EN.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

FLOOR = "floor"
AUTO = "auto"


@dataclass(frozen=True)
class LiveSeat:
    channel: str  # where it is live
    booth: str
    source: str  # what it chose to hear: floor, auto or a channel


def understands(booth_languages: Collection[str], language: str | None) -> bool:
    # An empty list means a booth that understands every language (the config default).
    return language is None or not booth_languages or language in booth_languages


def hears_floor(
    live: LiveSeat, floor_language: str | None, languages: Mapping[str, Collection[str]]
) -> bool:
    if live.source == FLOOR:
        return True
    if live.source == AUTO:
        return understands(languages.get(live.booth, ()), floor_language)
    return False


def resolve(
    booth: str,
    source: str,
    *,
    own_channel: str | None,
    auto_relay: bool,
    floor_language: str | None,
    languages: Mapping[str, Collection[str]],  # booth -> languages it understands
    channel_language: Mapping[str, str],  # channel -> its language
    live: Sequence[LiveSeat],
) -> str:
    """The channel a seat of `booth` with this `source` choice hears now."""
    if source != AUTO:
        return source
    mine = languages.get(booth, ())
    if not auto_relay or understands(mine, floor_language):
        return FLOOR
    for seat in live:
        if seat.channel == own_channel or seat.booth == booth:
            continue
        lang = channel_language.get(seat.channel)
        if (
            lang is not None
            and lang != floor_language
            and understands(mine, lang)
            and hears_floor(seat, floor_language, languages)
        ):
            return seat.channel
    return FLOOR  # no pivot yet: the floor is better than silence
