"""SentencePiece BPE tokenizer trained on the training transcripts, as NeMo's ``process_asr_text_tokenizer.py``.

Same trainer settings as NeMo's ``create_spt_model``: BPE, ``character_coverage=1.0``, no BOS/EOS pieces
(piece 0 is ``<unk>``), ``hard_vocab_limit=false`` (a small corpus may give fewer pieces than asked) and
the ``nmt_nfkc_cf`` normaliser (NFKC + lower case). The trainer is seeded and reads the sentences in the
given order, so the same texts give the same model bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import sentencepiece as spm


def train_tokenizer(texts: Iterable[str], vocab_size: int = 256, seed: int = 0) -> bytes:
    """Transcripts -> SentencePiece model proto bytes (``Tokenizer(bytes)`` / ``ouvir.models.tokenizer``)."""
    sentences = [t.strip() for t in texts if t.strip()]
    if not sentences:
        raise ValueError("no text to train the tokenizer on")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        normalization_rule_name="nmt_nfkc_cf",
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()
