"""Cuts a growing matrix of feature columns into encoder steps: NeMo's default streaming mode.

Exactly ``CacheAwareStreamingAudioBuffer.__iter__`` with ``pad_and_drop_preencoded=False`` (fixture README
§8.2), but incremental: columns arrive in pieces and ``finish()`` marks the end of input.

* Step 0: columns ``[0, chunk_size[0])``, preceded by ``pre_encode_cache_size[0]`` zero columns (none for
  NeMo's models); the encoder drops nothing.
* Step s >= 1 at read pointer ``idx``: the previous ``pre_encode_cache_size[1]`` columns (left-padded with
  zero columns when fewer exist) + ``[idx, idx + chunk_size[1])``; the encoder drops
  ``drop_extra_pre_encoded`` leading frames.
* The pointer advances by ``shift_size``. A step waits for a full chunk of new columns; after ``finish()``
  the last, shorter chunk is cut if it has at least ``sampling_frames`` new columns, and then no more.

Only the columns a later step can still read are kept, so memory stays bounded on endless input.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ouvir.engine.backends.base import ChunkGeometry


class Chunk(NamedTuple):
    features: np.ndarray  # (F, n) float32: pre-encode cache columns + new columns
    first: bool  # NeMo's first step: no pre-encode cache, nothing dropped
    drop_extra: int  # encoder frames the backend drops after subsampling (0 on the first step)
    start: int  # column index of the first new column
    new: int  # new columns in this chunk (n minus the pre-encode cache)


class ChunkScheduler:
    def __init__(self, geometry: ChunkGeometry, n_features: int) -> None:
        self.geometry = geometry
        self._kept = np.zeros((n_features, 0), dtype=np.float32)  # (F, t) columns [offset, total)
        self._offset = 0  # column index of self._kept[:, 0]
        self._idx = 0  # read pointer (NeMo buffer_idx)
        self._step = 0
        self._finished = False
        self._done = False

    @property
    def columns(self) -> int:
        """Feature columns received so far."""
        return self._offset + self._kept.shape[1]

    @property
    def buffered(self) -> int:
        """Columns held (those a later step can still read)."""
        return self._kept.shape[1]

    @property
    def done(self) -> bool:
        """Input finished and every chunk cut."""
        return self._done

    def push(self, columns: np.ndarray) -> None:
        """columns (F, t) float32, the next feature columns."""
        if self._finished:
            raise RuntimeError("push() after finish(): the stream's input has ended")
        self._kept = np.concatenate([self._kept, columns.astype(np.float32, copy=False)], axis=1)

    def finish(self) -> None:
        self._finished = True

    def next_chunk(self) -> Chunk | None:
        """The next chunk, or None until enough columns arrive (or for good, once ``done``)."""
        if self._done:
            return None
        g, later = self.geometry, int(self._step > 0)
        available = self.columns - self._idx
        n_new = min(g.chunk_size[later], available)
        if n_new < g.chunk_size[later] and not self._finished:
            return None
        if n_new < g.sampling_frames[later]:
            self._done = self._finished
            return None
        cache = g.pre_encode_cache_size[later]
        lo = self._idx - self._offset
        past = self._kept[:, max(lo - cache, 0) : lo]  # (F, <= cache)
        pad = np.zeros((self._kept.shape[0], cache - past.shape[1]), dtype=np.float32)  # (F, missing)
        features = np.concatenate([pad, past, self._kept[:, lo : lo + n_new]], axis=1)  # (F, cache + n_new)
        chunk = Chunk(features, first=not later, drop_extra=g.drop_extra_pre_encoded if later else 0,
                      start=self._idx, new=n_new)
        self._idx += g.shift_size[later]
        self._step += 1
        self._forget()
        return chunk

    def _forget(self) -> None:
        keep_from = max(self._idx - self.geometry.pre_encode_cache_size[1], self._offset)
        drop = min(keep_from - self._offset, self._kept.shape[1])
        self._kept = self._kept[:, drop:]
        self._offset += drop
