"""``device``: the torch backend on a CUDA GPU, ONNX Runtime's CUDA provider, and clear errors where neither is."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.backends import open_backend
from ouvir.engine.backends.onnx_backend import execution_providers
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer

from .reference import reference

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()


def test_device_errors_name_the_problem(nemo_dir, tmp_path):
    model = nemo_dir / "hybrid_multi.nemo"
    with pytest.raises(ValueError, match="device 'gpu' is not one of"):
        open_backend(model, device="gpu")
    with pytest.raises(ValueError, match="pte backend runs on the CPU"):
        open_backend(tmp_path, "pte", device="cuda")
    if HAS_CUDA:
        assert open_backend(model, device="cuda").device.type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="sees no CUDA device"):
            open_backend(model, device="cuda")


def test_onnx_cuda_provider_or_a_clear_error():
    import onnxruntime as ort

    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert execution_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        with pytest.raises(RuntimeError, match=r"no CUDAExecutionProvider \(pip install onnxruntime-gpu\)"):
            execution_providers("cuda")


@pytest.mark.skipif(not HAS_CUDA, reason="no GPU on this machine: the CUDA path needs one")
def test_torch_backend_on_cuda_gives_nemo_tokens(nemo_dir):
    _, z = reference(nemo_dir, "hybrid_multi")
    rec = Recognizer(open_backend(nemo_dir / "hybrid_multi.nemo", lookahead_ms=1040, device="cuda"), "rnnt")
    stream = rec.create_stream()
    stream.accept_waveform(np.load(nemo_dir / "test_audio_f32.npy"), 16000)
    stream.input_finished()
    (final,) = [e for e in rec.decode(stream) if isinstance(e, Final)]
    assert [t.id for t in final.tokens] == z["stream.c70_13.rnnt_token_ids"].tolist()
