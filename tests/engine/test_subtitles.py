"""Subtitles: finals cut into cues at word times, written as SRT / WebVTT and read back by the ``srt`` and
``webvtt-py`` parsers; ``ouvir transcribe --format srt|vtt|txt|json`` on the fixture speech."""

from __future__ import annotations

import io
import itertools
import json

import pytest
import srt
import webvtt

from ouvir.engine.cli import main
from ouvir.engine.events import Final, TokenTime
from ouvir.engine.subtitles import LINE_CHARS, MAX_CUE_S, SubtitleWriter, cues, timestamp

from .reference import reference

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "seven", "wise", "owls",
         "watch", "from", "an", "old", "oak", "tree", "at", "dusk"]


def final_of(words: list[str], starts: list[float], end_s: float, segment: int = 0) -> Final:
    """A final whose tokens are one word-start piece per word ("▁the"), plus a continuation piece ("s") on
    every third word: the word times come from the word-start pieces only."""
    tokens = []
    for i, (word, t) in enumerate(zip(words, starts, strict=True)):
        tokens.append(TokenTime(2 * i, "▁" + word, int(t / 0.08), t))
        if i % 3 == 0:
            tokens.append(TokenTime(2 * i + 1, "s", int(t / 0.08) + 1, t + 0.08))
    text = " ".join(w + ("s" if i % 3 == 0 else "") for i, w in enumerate(words))
    return Final(text, segment, max(0.0, starts[0] - 0.3), end_s, tuple(tokens))


def seconds(td) -> float:
    return td.total_seconds()


def vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_a_long_final_is_cut_between_words_at_their_token_times():
    starts = [0.5 + 0.7 * i for i in range(len(WORDS))]  # 21 words over 14.5 s
    final = final_of(WORDS, starts, end_s=16.0)
    got = cues(final)
    assert len(got) >= 3
    assert " ".join(" ".join(c.lines) for c in got) == final.text  # every word once, in order
    first_words = [0]
    for c in got:
        assert 1 <= len(c.lines) <= 2 and all(len(line) <= LINE_CHARS for line in c.lines)
        assert c.start_s == pytest.approx(starts[first_words[-1]])  # a cue starts at its first word's token
        first_words.append(first_words[-1] + len(" ".join(c.lines).split()))
        assert c.end_s - c.start_s <= MAX_CUE_S + 0.7
    for a, b in itertools.pairwise(got):
        assert a.end_s == b.start_s  # back to back
    assert got[0].start_s == 0.5 and got[-1].end_s == 16.0


def test_a_short_final_is_one_cue_and_untimed_tokens_keep_it_whole():
    final = final_of(["hello", "world"], [1.0, 1.4], end_s=2.5)
    assert [(c.start_s, c.end_s, c.lines) for c in cues(final)] == [(1.0, 2.5, ("hellos world",))]
    untimed = Final(" ".join(WORDS), 0, 3.0, 20.0, ())  # no tokens: nothing to cut at
    (one,) = cues(untimed)
    assert (one.start_s, one.end_s) == (3.0, 20.0) and " ".join(one.lines) == untimed.text
    assert cues(Final("", 1, 0.0, 1.0, ())) == []


def test_timestamps():
    assert timestamp(3723.4567, "srt") == "01:02:03,457"
    assert timestamp(0.0, "vtt") == "00:00:00.000"
    assert timestamp(59.9996, "vtt") == "00:01:00.000"


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_written_cues_parse_back_with_their_times_and_text(fmt):
    finals = [final_of(WORDS, [0.5 + 0.7 * i for i in range(len(WORDS))], 16.0, 0),
              final_of(["and", "then", "silence"], [18.0, 18.4, 18.9], 20.5, 1)]
    expected = [c for f in finals for c in cues(f)]
    out = io.StringIO()
    writer = SubtitleWriter(out, fmt)
    for f in finals:
        writer.write(f)
    if fmt == "srt":
        parsed = list(srt.parse(out.getvalue()))
        assert [s.index for s in parsed] == list(range(1, len(expected) + 1))
        got = [(seconds(s.start), seconds(s.end), tuple(s.content.split("\n"))) for s in parsed]
    else:
        parsed = list(webvtt.from_string(out.getvalue(), strict=True))
        got = [(vtt_seconds(c.start), vtt_seconds(c.end), tuple(c.lines)) for c in parsed]
    assert len(got) == len(expected) >= 4
    for (start, end, lines), cue in zip(got, expected, strict=True):
        assert (start, end, lines) == (pytest.approx(cue.start_s, abs=5e-4), pytest.approx(cue.end_s, abs=5e-4),
                                       cue.lines)


@pytest.fixture(scope="module")
def fixture_text(nemo_dir) -> str:
    return reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_13"]["rnnt_text"]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("fmt", ["srt", "vtt", "txt", "json"])
def test_transcribe_format(nemo_dir, capsys, fixture_text, fmt):
    """``ouvir transcribe --format F`` on the fixture speech (NeMo's text, one segment of 8 s): the subtitle
    formats parse, hold NeMo's words in order within the file's 8 s, and cue lines fit the screen."""
    argv = ["transcribe", "--model", str(nemo_dir / "hybrid_multi.nemo"), str(nemo_dir / "test_audio.wav"),
            "--format", fmt]
    assert main(argv) == 0
    out = capsys.readouterr().out
    if fmt == "srt":
        parsed = list(srt.parse(out))
        spans = [(seconds(s.start), seconds(s.end)) for s in parsed]
        lines = [line for s in parsed for line in s.content.split("\n")]
    elif fmt == "vtt":
        parsed = list(webvtt.from_string(out, strict=True))
        spans = [(vtt_seconds(c.start), vtt_seconds(c.end)) for c in parsed]
        lines = [line for c in parsed for line in c.lines]
    elif fmt == "txt":
        assert out == fixture_text + "\n"
        return
    else:
        events = [json.loads(line) for line in out.splitlines()]
        assert events[-1]["type"] == "final" and events[-1]["text"] == fixture_text
        assert main([*argv[:-2], "--json"]) == 0  # --json is the same output
        assert capsys.readouterr().out == out
        return
    assert " ".join(lines) == fixture_text
    assert all(len(line) <= LINE_CHARS for line in lines)
    assert spans[0][0] > 0 and spans[-1][1] == 8.0
    assert all(a <= b for a, b in spans) and all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_subtitles_of_several_files_are_refused(nemo_dir, capsys):
    wav = str(nemo_dir / "test_audio.wav")
    assert main(["transcribe", "--model", str(nemo_dir / "hybrid_multi.nemo"), wav, wav, "--format", "srt"]) == 1
    assert "--format srt writes one file's subtitles" in capsys.readouterr().err
