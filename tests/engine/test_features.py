"""The numpy log-mel against NeMo's own preprocessor output, and streaming against offline."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from ouvir.engine.features import StreamingLogMel, hann_window, log_mel, mel_filterbank
from ouvir.engine.features_config import FeatureConfig

CFG = FeatureConfig()


def _featurizer_tensors(nemo_path) -> tuple[np.ndarray, np.ndarray]:
    torch = pytest.importorskip("torch")
    with tarfile.open(nemo_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_weights.ckpt"))
        state = torch.load(io.BytesIO(tar.extractfile(member).read()), weights_only=True)
    window = state["preprocessor.featurizer.window"].numpy()  # (400,)
    fb = state["preprocessor.featurizer.fb"].numpy()  # (1, 80, 257)
    return window, fb


@pytest.fixture(scope="module")
def audio(nemo_dir) -> np.ndarray:
    return np.load(nemo_dir / "test_audio_f32.npy")  # (128000,)


@pytest.mark.parametrize("model", ["hybrid_multi", "ctc_conformer"])
def test_log_mel_matches_nemo_preprocessor(nemo_dir, audio, model):
    window, fb = _featurizer_tensors(nemo_dir / f"{model}.nemo")
    ref = np.load(nemo_dir / f"{model}_reference.npz")["preproc.features"][0]  # (80, 801)
    got = log_mel(audio, CFG, window, fb)
    assert got.shape == ref.shape == (80, 801)
    assert got.dtype == np.float32
    assert np.all(got[:, 800] == 0.0)
    err = np.abs(got - ref)
    # Bins far above the log guard agree to float32 rounding; the largest differences sit in bins whose
    # power is ~1e-6 of the frame's peak, where torch's own float32 FFT noise is of that size.
    assert err.max() <= 5e-4
    assert np.percentile(err, 99) <= 2e-5
    assert err[ref > -5.0].max() <= 1e-5


def test_own_window_and_filterbank_match_the_checkpoint(nemo_dir):
    window, fb = _featurizer_tensors(nemo_dir / "hybrid_multi.nemo")
    assert np.abs(hann_window(CFG) - window).max() <= 3e-7
    assert window[0] == 0.0 and window[-1] == 0.0  # symmetric Hann
    assert np.array_equal(mel_filterbank(CFG), fb[0])


def test_log_mel_with_own_tensors_matches_nemo(nemo_dir, audio):
    ref = np.load(nemo_dir / "hybrid_multi_reference.npz")["preproc.features"][0]
    assert np.abs(log_mel(audio, CFG) - ref).max() <= 5e-4


def test_filterbank_shape_and_slaney_norm():
    fb = mel_filterbank(CFG)
    assert fb.shape == (80, 257)
    # Slaney norm: each triangle's area in Hz is 1, i.e. sum(weights) * bin_width ~= 1 for wide filters.
    bin_hz = CFG.sample_rate / CFG.n_fft
    assert np.allclose(fb[40:].sum(axis=1) * bin_hz, 1.0, atol=0.02)
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] <= 256


def test_short_and_empty_signals():
    assert np.array_equal(log_mel(np.zeros(0, np.float32), CFG), np.zeros((80, 1), np.float32))
    out = log_mel(np.zeros(159, np.float32), CFG)
    assert out.shape == (80, 1) and np.all(out == 0.0)
    out = log_mel(np.zeros(320, np.float32), CFG)
    assert out.shape == (80, 3)
    assert np.allclose(out[:, :2], np.log(2.0**-24)) and np.all(out[:, 2] == 0.0)


def _stream(x: np.ndarray, sizes, streamer: StreamingLogMel) -> np.ndarray:
    outs, i, k = [], 0, 0
    longest = 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        outs.append(streamer.accept(x[i : i + n]))
        longest = max(longest, len(streamer._padded))
        i, k = i + n, k + 1
    outs.append(streamer.flush())
    assert longest <= CFG.n_fft + max(sizes)  # only the tail of not-yet-final columns is kept
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize("sizes", [[1], [159], [160], [161], [4000], "random"])
def test_streaming_equals_offline_for_any_block_size(audio, sizes):
    x = audio[:24_037]  # not a multiple of 160
    if sizes == "random":
        sizes = list(np.random.default_rng(7).choice([1, 2, 159, 160, 161, 399, 401, 4000], size=200))
    ref = log_mel(x, CFG)
    got = _stream(x, sizes, StreamingLogMel(CFG))
    assert got.shape == ref.shape == (80, 24_037 // 160 + 1)
    assert np.abs(got - ref).max() <= 1e-5
    assert np.all(got[:, -1] == 0.0)


def test_streaming_emits_a_column_once_its_window_is_in(audio):
    s = StreamingLogMel(CFG)
    assert s.accept(audio[:199]).shape == (80, 0)  # column 0 spans samples -200..199
    assert s.accept(audio[199:200]).shape == (80, 1)
    assert s.accept(audio[200:359]).shape == (80, 0)
    assert s.accept(audio[359:360]).shape == (80, 1)  # column 1 needs 160 + 200 samples
    assert s.accept(audio[360:1930]).shape == (80, 9)  # columns 2..10; column 11 needs 1960 samples
    tail = s.flush()  # 1930 samples -> 12 valid columns: column 11 (zero right padding) + the masked one
    assert tail.shape == (80, 2) and np.all(tail[:, 1] == 0.0)
    assert np.abs(tail[:, 0] - log_mel(audio[:1930], CFG)[:, 11]).max() <= 1e-5
    assert s.samples_seen == 0 and s.columns_emitted == 0


def test_streaming_two_signals_after_flush_and_reset(audio, nemo_dir):
    window, fb = _featurizer_tensors(nemo_dir / "hybrid_multi.nemo")
    s = StreamingLogMel(CFG, window, fb)
    a, b = audio[:5000], audio[60_000:70_001]
    first = np.concatenate([s.accept(a), s.flush()], axis=1)
    s.accept(audio[:3000])
    s.reset()
    second = np.concatenate([s.accept(b[:4321]), s.accept(b[4321:]), s.flush()], axis=1)
    assert np.abs(first - log_mel(a, CFG, window, fb)).max() <= 1e-5
    assert np.abs(second - log_mel(b, CFG, window, fb)).max() <= 1e-5


def test_rejects_mismatched_tensors():
    with pytest.raises(ValueError, match="window"):
        log_mel(np.zeros(800, np.float32), CFG, window=np.ones(512, np.float32))
    with pytest.raises(ValueError, match="filterbank"):
        StreamingLogMel(CFG, fb=np.ones((64, 257), np.float32))
