"""Subtitles from final results: SubRip (``.srt``) and WebVTT (``.vtt``) cues, written as each final arrives.

A final result becomes one cue, or several when it would not fit two lines of ``LINE_CHARS`` or would stay
on screen longer than ``MAX_CUE_S``: it is cut between words, each cue starting at its first word's token
time (the encoder frame it was emitted on) and ending where the next one starts, the last one at the
final's end. A final whose tokens do not line up with its words (byte-fallback pieces) stays one cue.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TextIO

from ouvir.engine.events import Final
from ouvir.engine.tokens import WORD_BOUNDARY

SUBTITLE_FORMATS = ("srt", "vtt")
LINE_CHARS = 42  # the usual subtitle line length
MAX_LINES = 2
MAX_CUE_S = 6.0


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    lines: tuple[str, ...]


def word_starts(final: Final) -> list[float]:
    """The start time of each word of ``final.text`` from its tokens, or [] when they do not line up."""
    starts = [t.start_s for i, t in enumerate(final.tokens) if i == 0 or t.piece.startswith(WORD_BOUNDARY)]
    return starts if len(starts) == len(final.text.split()) else []


def cues(final: Final) -> list[Cue]:
    """``final`` cut into cues of at most ``MAX_LINES`` lines and ``MAX_CUE_S`` seconds (see the module doc)."""
    words = final.text.split()
    if not words:
        return []
    starts = word_starts(final)
    if not starts:  # no times to cut at: one cue, however long
        return [Cue(final.start_s, max(final.start_s, final.end_s), tuple(textwrap.wrap(final.text, LINE_CHARS)))]
    groups: list[list[int]] = [[0]]
    for i in range(1, len(words)):
        group = groups[-1]
        text = " ".join(words[j] for j in [*group, i])
        if len(textwrap.wrap(text, LINE_CHARS)) > MAX_LINES or starts[i] - starts[group[0]] > MAX_CUE_S:
            groups.append([i])
        else:
            group.append(i)
    out = []
    for k, group in enumerate(groups):
        start = starts[group[0]]
        end = starts[groups[k + 1][0]] if k + 1 < len(groups) else final.end_s
        lines = textwrap.wrap(" ".join(words[j] for j in group), LINE_CHARS)
        out.append(Cue(start, max(start, end), tuple(lines)))
    return out


def timestamp(seconds: float, fmt: str) -> str:
    """``HH:MM:SS,mmm`` (srt) or ``HH:MM:SS.mmm`` (vtt)."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


class SubtitleWriter:
    """Writes ``fmt`` ("srt" | "vtt") cues to ``out``, numbered from 1, as finals are given to it."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in SUBTITLE_FORMATS:
            raise ValueError(f"subtitle format {fmt!r} is not one of {SUBTITLE_FORMATS}")
        self.out, self.fmt = out, fmt
        self.count = 0
        if fmt == "vtt":
            out.write("WEBVTT\n\n")

    def write(self, final: Final) -> None:
        for cue in cues(final):
            self.count += 1
            span = f"{timestamp(cue.start_s, self.fmt)} --> {timestamp(cue.end_s, self.fmt)}"
            number = f"{self.count}\n" if self.fmt == "srt" else ""
            self.out.write(number + span + "\n" + "\n".join(cue.lines) + "\n\n")
