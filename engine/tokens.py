"""Token ids -> text from the SentencePiece vocabulary pieces alone (no sentencepiece at run time).

Matches ``SentencePieceProcessor.decode_ids`` for the pieces ASR models use: pieces are concatenated, the
word-boundary mark '▁' becomes a space and the leading space of the first piece is removed; ``<unk>``
renders as " ⁇ "; control pieces (``<s>``, ``</s>``, ``<pad>``) render as nothing; byte-fallback pieces
(``<0xE2>``) are joined and decoded as UTF-8. NeMo's end-of-utterance pieces (``<EOU>``, and ``<EOB>`` after a
backchannel, as in parakeet_realtime_eou) render as nothing: they are endpoints (``utterance_ends``), not
text. Decoding a prefix of the tokens gives a prefix-consistent text, so a partial result never splits a
word into garbled pieces; an incomplete UTF-8 sequence at the end of a partial is held back rather than
shown as a replacement character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD_BOUNDARY = "▁"
UNK_SURFACE = " \u2047 "
_CONTROL = frozenset({"<s>", "</s>", "<pad>"})
UTTERANCE_END = frozenset({"<EOU>", "<EOB>"})  # NeMo asr_eou's EOU_STRING / EOB_STRING
_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class Detokenizer:
    def __init__(self, vocabulary: Iterable[str]) -> None:
        self.pieces = tuple(vocabulary)
        self.blank_id = len(self.pieces)
        self.utterance_ends = frozenset(i for i, p in enumerate(self.pieces) if p in UTTERANCE_END)  # token ids

    def piece(self, token: int) -> str:
        return self.pieces[token] if 0 <= token < self.blank_id else ""

    def text(self, tokens: Iterable[int]) -> str:
        out: list[str] = []
        pending = bytearray()  # consecutive byte-fallback pieces
        for token in tokens:
            piece = self.piece(int(token))
            if m := _BYTE.fullmatch(piece):
                pending.append(int(m.group(1), 16))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            if piece == "<unk>":
                out.append(UNK_SURFACE)
            elif piece not in _CONTROL and piece not in UTTERANCE_END:
                out.append(piece.replace(WORD_BOUNDARY, " "))
        if pending:
            out.append(pending.decode("utf-8", errors="ignore"))  # an unfinished character is held back
        text = "".join(out)
        return text[1:] if text.startswith(" ") and not text.startswith(UNK_SURFACE) else text
