"""Build the default model's token n-gram (engine/ngram.py) from the training side of the text corpus, and its
lexicon (engine/lexicon.py): the dictionary every corpus word comes from (wamerican, as ``text.load_vocabulary``
reads it).

    python -m ouvir.models.train.lm --tokenizer pkg/default_model/onnx-fp32/tokenizer.model --out lm.npz \
        --lexicon lexicon.txt.gz      # the defaults built the shipped lm.npz (0.94 MB)

Only ``Corpus.train`` sentences are counted: the held-out test sentences (``text.is_test_text``) never are, so the
test set's WER with the LM measures sentences the LM has not seen, from the same kinds of text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ouvir.engine.lexicon import Lexicon
from ouvir.engine.ngram import build
from ouvir.models.tokenizer import Tokenizer
from ouvir.models.train.text import TextSources, load_corpus, load_vocabulary, read_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.lm", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", type=Path, required=True, help="the model's SentencePiece tokenizer.model")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    p.add_argument("--order", type=int, default=6)
    p.add_argument("--discount", type=float, default=0.8)
    p.add_argument("--min-count", type=int, default=3, help="drop n-grams (length >= 3) seen fewer times")
    p.add_argument("--corpus", type=Path, help="a saved corpus (text.save_corpus) instead of the Debian texts")
    p.add_argument("--lexicon", type=Path, help="also write the dictionary's words here (gzip text)")
    a = p.parse_args(argv)
    if a.lexicon is not None:
        Lexicon(load_vocabulary(TextSources().words)).save(a.lexicon)
    start = time.perf_counter()
    tok = Tokenizer(a.tokenizer.read_bytes())
    corpus = read_corpus(a.corpus) if a.corpus else load_corpus()
    sentences = [tok.encode(text) for _, text in corpus.train]
    lm = build(sentences, len(tok.pieces), a.order, a.discount, a.min_count)
    lm.save(a.out)
    print(json.dumps({"sentences": len(sentences), "tokens": sum(map(len, sentences)), "order": a.order,
                      "bytes": a.out.stat().st_size, "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
