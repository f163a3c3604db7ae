"""``ouvir bench-host``: ouvir-host in its own torch-free process on the default model's int8 bundle, fed at
real-time pace; what it reports (the timings themselves are benchmark numbers, not asserted here)."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from ouvir.engine.cli import main
from ouvir.engine.default_model import root, samples


def test_bench_host_reports_first_partial_rss_and_the_hosts_text(tmp_path):
    sample = samples()[1]
    assert main(["bench-host", str(root() / "onnx-int8"), "--audio", str(sample.path), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "host.json").read_text())
    audio_s = len(sf.read(sample.path, dtype="int16")[0]) / 16000
    assert report["audio_s"] == audio_s
    assert 0 < report["start_to_first_partial_s"] < report["start_to_first_final_s"]
    assert report["start_to_first_final_s"] >= audio_s * 0.5  # paced: the audio took real time to arrive
    assert 30 < report["peak_rss_mib"] < 1000
    assert report["finals"] and all(isinstance(t, str) for t in report["finals"])
    assert report["metrics"]["decoded_s"] == round(audio_s, 3) and report["metrics"]["dropped_audio_s"] == 0.0
    assert np.isfinite(report["metrics"]["rtf"])
