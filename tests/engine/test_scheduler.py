"""The chunk scheduler reproduces NeMo's default streaming schedule (fixture README §8.2) incrementally."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.backends.base import ChunkGeometry
from ouvir.engine.scheduler import ChunkScheduler

from .reference import geometry, reference

CONTEXTS = [("hybrid_multi", c) for c in ("c70_13", "c70_6", "c70_1", "c70_0")] + [("ctc_conformer", "c64_7")]


def _run(scheduler: ChunkScheduler, features: np.ndarray, pieces: list[int]) -> list:
    """Push ``features`` (F, T) in pieces of the given sizes, collecting chunks as they become ready."""
    chunks, pos = [], 0
    for n in pieces:
        scheduler.push(features[:, pos : pos + n])
        pos += n
        while (chunk := scheduler.next_chunk()) is not None:
            chunks.append(chunk)
    assert pos == features.shape[1]
    scheduler.finish()
    while (chunk := scheduler.next_chunk()) is not None:
        chunks.append(chunk)
    assert scheduler.done
    return chunks


@pytest.mark.parametrize(("model", "ctx"), CONTEXTS)
def test_schedule_matches_nemo(nemo_dir, model, ctx):
    ref, z = reference(nemo_dir, model)
    features = z["preproc.features"][0]  # (80, 801): the streaming buffer, masked last column included
    rng = np.random.default_rng(1)
    pieces = []
    while sum(pieces) < features.shape[1]:
        pieces.append(min(int(rng.integers(0, 40)), features.shape[1] - sum(pieces)))
    scheduler = ChunkScheduler(geometry(ref, model, ctx), features.shape[0])
    chunks = _run(scheduler, features, pieces)
    stream = ref["streaming"][ctx]
    assert len(chunks) == stream["num_steps"]
    assert [c.features.shape[1] for c in chunks] == stream["chunk_frames_per_step"] == stream["chunk_len_per_step"]
    assert [c.drop_extra for c in chunks] == stream["drop_extra_pre_encoded_per_step"]
    assert [c.first for c in chunks] == [True] + [False] * (len(chunks) - 1)
    shifts = ref["streaming_cfg"][ctx]["shift_size"]
    assert [c.start + shifts[k > 0] for k, c in enumerate(chunks)] == stream["buffer_idx_after_per_step"]
    for k, chunk in enumerate(chunks):
        stored = z.get(f"stream.{ctx}.step{k:03d}.chunk")  # default look-ahead: every chunk's values
        if stored is not None:
            assert np.array_equal(chunk.features, stored[0]), f"step {k}"
        else:  # the new columns, preceded by the previous 9 / 5 columns, zero-padded at the start
            cache = len(chunk.features[0]) - chunk.new
            past = features[:, max(chunk.start - cache, 0) : chunk.start]
            expect = np.concatenate([np.zeros((80, cache - past.shape[1]), np.float32), past,
                                     features[:, chunk.start : chunk.start + chunk.new]], axis=1)
            assert np.array_equal(chunk.features, expect), f"step {k}"


def test_zero_padded_pre_encode_cache_when_fewer_columns_exist(nemo_dir):
    """[70, 0]: step 1 starts at column 1, so 8 of its 9 cache columns are zeros (fixture pitfall 5)."""
    ref, z = reference(nemo_dir, "hybrid_multi")
    features = z["preproc.features"][0]
    scheduler = ChunkScheduler(geometry(ref, "hybrid_multi", "c70_0"), 80)
    scheduler.push(features[:, :9])
    first, second = scheduler.next_chunk(), scheduler.next_chunk()
    assert first.features.shape == (80, 1) and second.features.shape == (80, 17)
    assert np.all(second.features[:, :8] == 0) and np.array_equal(second.features[:, 8:], features[:, :9])
    assert scheduler.next_chunk() is None  # columns 9..16 are not there yet


def test_a_chunk_is_cut_exactly_when_its_columns_are_in(nemo_dir):
    ref, z = reference(nemo_dir, "hybrid_multi")
    features = z["preproc.features"][0]
    scheduler = ChunkScheduler(geometry(ref, "hybrid_multi", "c70_13"), 80)
    scheduler.push(features[:, :104])
    assert scheduler.next_chunk() is None
    scheduler.push(features[:, 104:105])
    assert scheduler.next_chunk().features.shape[1] == 105
    scheduler.push(features[:, 105:216])
    assert scheduler.next_chunk() is None
    scheduler.push(features[:, 216:217])
    chunk = scheduler.next_chunk()
    assert chunk.start == 105 and chunk.new == 112 and np.array_equal(chunk.features, features[:, 96:217])


def test_end_of_input_cuts_the_short_last_chunk_only_if_it_has_sampling_frames():
    geo = ChunkGeometry((9, 16), (9, 16), (0, 9), 2, (1, 8), 8, (70, 1))
    for total, widths in ((9 + 16 + 8, [9, 25, 17]), (9 + 16 + 7, [9, 25])):
        scheduler = ChunkScheduler(geo, 2)
        chunks = _run(scheduler, np.ones((2, total), np.float32), [total])
        assert [c.features.shape[1] for c in chunks] == widths
    scheduler = ChunkScheduler(geo, 2)
    assert _run(scheduler, np.ones((2, 0), np.float32), []) == []  # nothing in, nothing out
    with pytest.raises(RuntimeError, match="after finish"):
        scheduler.push(np.ones((2, 1), np.float32))


def test_memory_stays_bounded_on_endless_input():
    geo = ChunkGeometry((105, 112), (105, 112), (0, 9), 2, (1, 8), 8, (70, 13))
    scheduler = ChunkScheduler(geo, 80)
    column = np.zeros((80, 50), np.float32)
    steps = 0
    for _ in range(2000):  # 100 000 columns = 1000 s of audio
        scheduler.push(column)
        while scheduler.next_chunk() is not None:
            steps += 1
        assert scheduler.buffered <= 112 + 9 + 50
    assert steps == 1 + (100_000 - 105) // 112
    assert scheduler.columns == 100_000
