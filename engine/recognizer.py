"""The Recognizer / Stream API (sherpa-onnx's OnlineRecognizer / OnlineStream).

``Recognizer`` holds the backend (weights) and the decoding settings and can serve many streams; a
``Stream`` holds everything of one audio stream: its resampler, streaming log-mel, chunk scheduler, encoder
caches, decoder state and the open segment.

    rec = Recognizer.open("model.nemo", lookahead_ms=480)
    stream = rec.create_stream()
    stream.accept_waveform(samples, 16000)
    for event in rec.decode(stream): ...      # Partial / Final
    stream.input_finished()
    for event in rec.decode(stream): ...      # the rest, and the last Final
    for stream, event in rec.decode_streams(streams): ...   # many streams, batched

Segments end at endpoints (engine/endpoint.py), where the model emits an end-of-utterance token (``<EOU>`` /
``<EOB>``, engine/tokens.py: never text), or with ``reset``; the last one ends when the input does.
Encoder caches and decoder state run on across segments: the audio is one continuous signal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ouvir.engine.audio.resample import StreamResampler
from ouvir.engine.backends import open_backend
from ouvir.engine.backends.base import ENCODER_BATCH_AXES, Backend, EncoderState, ModelInfo, batch_row, stack_batch
from ouvir.engine.beam import BeamSearch, BeamState, beam_initial_state, keep_best, rnnt_beam_step
from ouvir.engine.decoders import (
    CTCState,
    Emitted,
    RNNTState,
    ctc_greedy_step,
    ctc_initial_state,
    rnnt_greedy_batch,
    rnnt_initial_state,
)
from ouvir.engine.endpoint import EndpointConfig, SegmentProgress, is_endpoint
from ouvir.engine.errors import NonFiniteAudioError
from ouvir.engine.events import Event, Final, Partial, TokenTime
from ouvir.engine.features import StreamingLogMel
from ouvir.engine.lexicon import Lexicon, Spelling
from ouvir.engine.ngram import NgramLM
from ouvir.engine.scheduler import Chunk, ChunkScheduler
from ouvir.engine.tokens import Detokenizer

DEFAULT_ENDPOINT = EndpointConfig()


class Stream:
    """One audio stream's state. Create it with ``Recognizer.create_stream()``."""

    def __init__(
        self, info: ModelInfo, encoder_state: EncoderState, decoder_state: CTCState | RNNTState | BeamState
    ) -> None:
        self.info = info
        self.features = StreamingLogMel(info.features, info.window, info.filterbank)
        self.scheduler = ChunkScheduler(info.geometry, info.features.features)
        # The encoder state: row b of the (batched) state the stream's last encoder call returned, kept whole so
        # that the same streams' next call can take it back uncopied.
        self.encoder_batch: tuple[EncoderState, int] = (encoder_state, 0)
        self.decoder_state = decoder_state
        self.input_rate: int | None = None  # the rate of the first accept_waveform call
        self.input_samples = 0  # samples given to accept_waveform, at input_rate
        self.resampler: StreamResampler | None = None  # when input_rate differs from the model's
        self.samples = 0  # samples at the model rate given to the features
        self.finished = False  # input_finished() was called
        self.ended = False  # the last Final has been produced; nothing more will come
        # The open segment.
        self.segment = 0
        self.segment_start_frame = 0
        self.tokens: list[TokenTime] = []
        self.text = ""

    @property
    def frames(self) -> int:
        """Encoder frames decoded so far."""
        return self.decoder_state.frames

    @property
    def received_s(self) -> float:
        return self.samples / self.info.features.sample_rate

    def accept_waveform(self, samples: np.ndarray, sample_rate: int) -> None:
        """samples (n,) float mono in [-1, 1] at ``sample_rate`` (resampled to the model rate if different)."""
        if self.finished:
            raise RuntimeError("accept_waveform() after input_finished(): create a new stream")
        x = np.asarray(samples)
        if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"accept_waveform takes mono float samples (n,), got {x.dtype} {x.shape}; convert PCM with "
                "ouvir.engine.audio (EdgeConverter / ArraySource)"
            )
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x))
            raise NonFiniteAudioError("accept_waveform", len(bad), self.input_samples + int(bad[0]))
        if self.input_rate is None:
            self.input_rate = int(sample_rate)
            if self.input_rate != self.info.features.sample_rate:
                self.resampler = StreamResampler(self.input_rate, self.info.features.sample_rate)
        elif sample_rate != self.input_rate:
            raise ValueError(f"sample rate changed from {self.input_rate} Hz to {sample_rate} Hz within one stream")
        self.input_samples += len(x)
        x = x.astype(np.float32, copy=False)
        if self.resampler is not None:
            x = self.resampler.process(x)
        self._features(self.features.accept(x), len(x))

    def input_finished(self) -> None:
        """No more audio: the remaining columns and the last, shorter chunk will be decoded."""
        if self.finished:
            return
        if self.resampler is not None:
            tail = self.resampler.flush()
            self._features(self.features.accept(tail), len(tail))
        self._features(self.features.flush(), 0)
        self.scheduler.finish()
        self.finished = True

    def _features(self, columns: np.ndarray, samples: int) -> None:
        self.samples += samples
        self.scheduler.push(columns)


class Recognizer:
    """A loaded model and how to decode it. Stateless across streams: share it."""

    def __init__(
        self,
        backend: Backend,
        decoder: str | None = None,
        endpoint: EndpointConfig = DEFAULT_ENDPOINT,
        search: BeamSearch | None = None,
        lm: NgramLM | None = None,
        lexicon: Lexicon | None = None,
    ) -> None:
        """``search``: RNNT beam search (None: greedy); ``lm``: an n-gram fused into it; ``lexicon``: the words its
        hypotheses are held to (``search.oov_penalty``)."""
        info = backend.info
        self.backend = backend
        self.info = info
        self.decoder = decoder or info.decoders[0]
        if self.decoder not in info.decoders:
            raise ValueError(f"decoder {self.decoder!r} is not in this model; it has {list(info.decoders)}")
        self.endpoint = endpoint
        self.detokenizer = Detokenizer(info.vocabulary)
        if search is not None and self.decoder != "rnnt":
            raise ValueError(f"beam search needs the rnnt decoder, not {self.decoder!r}")
        if (lm is not None or lexicon is not None) and search is None:
            raise ValueError("an n-gram LM or a lexicon works in beam search: give a BeamSearch too")
        if lm is not None and lm.vocab != len(info.vocabulary):
            raise ValueError(
                f"the n-gram LM has {lm.vocab} tokens, the model {len(info.vocabulary)}: another tokenizer"
            )
        self.search = search
        self.lm = lm
        self.spelling = Spelling(lexicon, info.vocabulary) if lexicon is not None else None

    @classmethod
    def open(
        cls,
        model: str | Path,
        backend: str | None = None,
        precision: str | None = None,
        lookahead_ms: int | None = None,
        decoder: str | None = None,
        endpoint: EndpointConfig = DEFAULT_ENDPOINT,
        search: BeamSearch | None = None,
        lm: NgramLM | None = None,
        lexicon: Lexicon | None = None,
    ) -> Recognizer:
        """A .nemo / ouvir checkpoint (torch backend) or a bundle directory (its onnx / pte backend); ``backend``
        and ``precision`` default to what the model holds."""
        return cls(open_backend(model, backend, precision, lookahead_ms), decoder, endpoint, search, lm, lexicon)

    def create_stream(self) -> Stream:
        blank = self.info.blank_id
        if self.search is not None:
            state: CTCState | RNNTState | BeamState = beam_initial_state(self.backend, blank)
        elif self.decoder == "rnnt":
            state = rnnt_initial_state(self.backend, blank)
        else:
            state = ctc_initial_state(blank)
        return Stream(self.info, self.backend.initial_state(1), state)

    def decode(self, stream: Stream) -> Iterator[Event]:
        """Run every chunk the stream has ready; yield a Partial when the open segment's text changed and a
        Final when it ended (endpoint, or the end of input)."""
        for _, event in self.decode_streams([stream]):
            yield event

    def decode_streams(self, streams: Sequence[Stream]) -> Iterator[tuple[Stream, Event]]:
        """``decode`` of many streams, batched: each round takes the next ready chunk of every stream and runs
        them in one encoder call per kind of step (first steps, later steps: they drop different frames), and
        decodes them with one CTC head call / batched RNNT greedy rounds. Yields ``(stream, event)``; each
        stream gets exactly the events ``decode(stream)`` would give it. Streams with nothing ready are skipped.

        Caches are stacked on the batch axis, each stream at its own position (``cache_last_channel_len``);
        chunks of different widths (a last, shorter one) are zero-padded to the widest, ``chunk_len`` keeping
        their real width. How a backend runs the batch is its own: torch and onnx in one call (the ONNX graphs
        have a dynamic batch axis), pte stream by stream inside ``encode`` (its methods are fixed at batch 1) and its
        heads in shared calls. Backends that are not ``batch_exact`` (dynamically quantized int8 ONNX: one activation
        scale per call) get one call per stream, so that every stream still gets exactly its own results.
        """
        while ready := [(s, c) for s in streams if not s.ended and (c := s.scheduler.next_chunk()) is not None]:
            for first in (True, False):
                group = [(s, c) for s, c in ready if c.first == first]
                for part in [group] if self.backend.batch_exact else [[x] for x in group]:
                    if part:
                        yield from self._decode_chunks(part, first)
        for stream in streams:
            if stream.scheduler.done and not stream.ended:
                stream.ended = True
                final = self.reset(stream)
                if final is not None:
                    yield stream, final

    def _decode_chunks(self, group: list[tuple[Stream, Chunk]], first: bool) -> Iterator[tuple[Stream, Event]]:
        """One encoder call for the chunks of ``group`` (all first steps or all later ones), then their decoding."""
        widths = [c.features.shape[1] for _, c in group]
        chunks = np.stack([np.pad(c.features, ((0, 0), (0, max(widths) - w))) for (_, c), w in zip(group, widths,
                                                                                                    strict=True)])
        streams = [s for s, _ in group]
        encoded, lengths, state = self.backend.encode(
            chunks, np.array(widths, dtype=np.int64), _batched_state(streams), first
        )  # (B, T', D), (B,)
        for b, stream in enumerate(streams):
            stream.encoder_batch = (state, b)
        valid = [encoded[b, : int(n)] for b, n in enumerate(lengths)]  # (T_b, D) each
        blank = self.info.blank_id
        if self.search is not None:
            for stream, x in zip(streams, valid, strict=True):
                stream.decoder_state = rnnt_beam_step(self.backend, x, stream.decoder_state, blank, self.search,
                                                      self.lm, self.spelling)
                for event in self._follow_beam(stream):
                    yield stream, event
            return
        if self.decoder == "rnnt":
            steps = rnnt_greedy_batch(
                self.backend, valid, [s.decoder_state for s in streams], blank, self.info.max_symbols
            )
        else:
            log_probs = self.backend.ctc_log_probs(encoded[:, : max(len(v) for v in valid)])  # (B, T, V+1)
            steps = [ctc_greedy_step(log_probs[b, : len(v)], s.decoder_state, blank)
                     for b, (s, v) in enumerate(zip(streams, valid, strict=True))]
        for stream, (emitted, stream.decoder_state) in zip(streams, steps, strict=True):
            for event in self._emit(stream, emitted):
                yield stream, event

    def reset(self, stream: Stream) -> Final | None:
        """End the open segment here and start the next one; returns its Final (None if it had no tokens)."""
        final = self._end_segment(stream, stream.frames)
        if isinstance(stream.decoder_state, BeamState):
            stream.decoder_state = keep_best(stream.decoder_state, (), ())
        return final

    def _follow_beam(self, stream: Stream) -> Iterator[Event]:
        """The events of the best hypothesis after a beam step: the open segment's tokens past the part it shares
        with the shown ones replace them. Once a segment ended, only the best hypothesis goes on."""
        assert isinstance(stream.decoder_state, BeamState)
        best = stream.decoder_state.best
        shown = [(t.id, t.frame) for t in stream.tokens]
        common = 0
        for a, b in zip(shown, zip(best.tokens, best.frames, strict=True), strict=False):
            if a != b:
                break
            common += 1
        del stream.tokens[common:]
        yield from self._emit(stream, list(zip(best.tokens[common:], best.frames[common:], strict=True)))
        state = stream.decoder_state  # reset() at an endpoint kept the best one already
        if len(state.best.tokens) != len(stream.tokens):  # a segment ended at an end-of-utterance token
            ids, frames = tuple(t.id for t in stream.tokens), tuple(t.frame for t in stream.tokens)
            stream.decoder_state = keep_best(state, ids, frames)

    def _end_segment(self, stream: Stream, frame: int) -> Final | None:
        """End the open segment before encoder frame ``frame`` (the next one starts there)."""
        final = None
        if stream.tokens:
            end_s = frame * self.info.frame_s
            if stream.ended:  # the last frame may reach past the audio
                end_s = min(end_s, stream.received_s)
            final = Final(stream.text, stream.segment, self._segment_start_s(stream), end_s, tuple(stream.tokens))
            stream.segment += 1
        stream.segment_start_frame = frame
        stream.tokens = []
        stream.text = ""
        return final

    def _emit(self, stream: Stream, emitted: Emitted) -> Iterator[Event]:
        """The events of one decoded chunk's tokens."""
        frame_s = self.info.frame_s
        pieces = self.detokenizer.pieces
        for tok, frame in emitted:
            if tok in self.detokenizer.utterance_ends:  # the model's own endpoint (<EOU>): not text
                yield from self._text_changed(stream)
                if (final := self._end_segment(stream, frame)) is not None:  # tokens after it, same frame: next
                    yield final
            else:
                stream.tokens.append(TokenTime(tok, pieces[tok], frame, frame * frame_s))
        yield from self._text_changed(stream)
        if is_endpoint(self.endpoint, self._progress(stream)):
            final = self.reset(stream)
            if final is not None:
                yield final

    def _text_changed(self, stream: Stream) -> Iterator[Partial]:
        text = self.detokenizer.text(t.id for t in stream.tokens)
        if text != stream.text:
            stream.text = text
            yield Partial(text, stream.segment, self._segment_start_s(stream))

    def _progress(self, stream: Stream) -> SegmentProgress:
        frame_s = self.info.frame_s
        quiet_from = stream.tokens[-1].frame + 1 if stream.tokens else stream.segment_start_frame
        return SegmentProgress(
            length_s=(stream.frames - stream.segment_start_frame) * frame_s,
            trailing_silence_s=(stream.frames - quiet_from) * frame_s,
            has_speech=bool(stream.tokens),
        )

    def _segment_start_s(self, stream: Stream) -> float:
        return stream.segment_start_frame * self.info.frame_s


def _batched_state(streams: list[Stream]) -> EncoderState:
    """The streams' encoder states as one batch. When they are, in order, all the rows of the state one encoder call
    returned (a server's steady state: the same streams every round), that state itself, nothing copied; else their
    rows (views) stacked."""
    batch = streams[0].encoder_batch[0]
    if len(batch.cache_last_channel_len) == len(streams) and all(
        s.encoder_batch[0] is batch and s.encoder_batch[1] == b for b, s in enumerate(streams)
    ):
        return batch
    return stack_batch([batch_row(*s.encoder_batch, ENCODER_BATCH_AXES) for s in streams], ENCODER_BATCH_AXES)
