"""A thin SentencePiece wrapper built from the model's bytes (as stored in a ``.nemo`` or a checkpoint)."""

from __future__ import annotations

from collections.abc import Sequence

import sentencepiece as spm


class Tokenizer:
    def __init__(self, model_bytes: bytes):
        self.model_bytes = model_bytes
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        except RuntimeError as e:
            raise ValueError(f"not a SentencePiece model ({e})") from None

    @property
    def pieces(self) -> tuple[str, ...]:
        """The vocabulary (id order, without the CTC/RNNT blank, which is ``len(pieces)``)."""
        return tuple(self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size()))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode_ids([int(i) for i in ids])

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode_as_ids(text))
