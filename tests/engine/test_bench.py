"""``ouvir bench``: percentiles, RTF and long-run arithmetic, the harness on a scripted backend with a fake
clock (every latency is known exactly), and the report files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from ouvir.engine.bench.audio import LoopedAudio
from ouvir.engine.bench.engines import OuvirEngine
from ouvir.engine.bench.harness import Meters, run_stream, summarize
from ouvir.engine.bench.machine import cpu_model
from ouvir.engine.bench.models import Config, configurations
from ouvir.engine.bench.paths import portable, portable_paths
from ouvir.engine.bench.plots import write_plots
from ouvir.engine.bench.report import build_report, comparisons, markdown, write_json
from ouvir.engine.bench.stats import LatencySummary, latency_drift, long_window_s, rss_growth, rtf
from ouvir.models.large import context_for, solve_decreasing
from tests.engine.fakes import ScriptedBackend

OUVIR = Path(sys.executable).with_name("ouvir")
BLOCK = 16 * 160  # GEOMETRY_160MS: 16 new feature columns of 10 ms per chunk
BLOCKS = 20


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def scripted_run(rss_every: int | None = None):
    """20 blocks of 160 ms; encoder call k takes (k + 1) ms, nothing else takes time."""
    clock = FakeClock()
    calls = iter(range(1, 100))
    backend = ScriptedBackend({2: [1], 5: [2, 3]}, on_encode=lambda: setattr(clock, "t", clock.t + next(calls) / 1000))
    engine = OuvirEngine(backend, "rnnt", clock, "scripted")
    rss = iter(range(1000, 2000, 10))
    meters = Meters(clock=clock, cpu=lambda: clock.t / 2, rss=lambda: next(rss))  # CPU: half of wall
    audio = LoopedAudio(np.sin(np.arange(8000, dtype=np.float32) / 5) * 0.1, 16000)  # 0.5 s, looped
    return engine, run_stream(engine, audio, BLOCK, BLOCKS * BLOCK, meters, rss_every=rss_every)


def test_percentiles_and_rtf_arithmetic():
    s = LatencySummary.of(np.arange(1, 101) / 1000)
    assert (s.count, s.mean_s, s.max_s) == (100, pytest.approx(0.0505), pytest.approx(0.1))
    assert (s.p50_s, s.p95_s, s.p99_s) == (pytest.approx(0.0505), pytest.approx(0.09505), pytest.approx(0.09901))
    assert rtf(3.0, 60.0) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        rtf(1.0, 0.0)


def test_long_run_windows_scale_with_the_run():
    assert long_window_s(3600) == 600 and long_window_s(7200) == 600 and long_window_s(60) == 10
    at = np.arange(1, 61, dtype=np.float64)  # a 60 s run, one chunk per second
    lat = np.where(at <= 10, 0.010, np.where(at > 50, 0.012, 0.5))  # (60,)
    d = latency_drift(at, lat, 60.0)
    assert (d.window_s, d.first_median_s, d.last_median_s) == (10, 0.010, 0.012)
    assert d.ratio == pytest.approx(1.2)
    g = rss_growth(np.array([0.0, 5, 10, 20]), np.array([100, 180, 200, 230]), warmup_s=5)
    assert (g.baseline_at_s, g.baseline_bytes, g.end_bytes, g.max_bytes, g.growth_bytes) == (5, 180, 230, 230, 50)


def test_harness_times_every_chunk_through_the_recognizer():
    engine, trace = scripted_run()
    assert trace.chunks.tolist() == [1] * BLOCKS  # a block of one shift decodes exactly one chunk
    assert trace.finish_chunks == 1  # the last 8 columns
    np.testing.assert_allclose(trace.latency_s, np.arange(1, 21) / 1000)
    assert trace.finish_s == pytest.approx(0.021)
    assert trace.at_s[0] == pytest.approx(0.16) and trace.at_s[-1] == pytest.approx(3.2)
    assert trace.tokens == 3  # every scripted token reached a Final
    s = summarize(trace, 0.16, engine.has_parts)
    assert s["compute_s"] == pytest.approx(0.231)  # 1 + 2 + ... + 21 ms
    assert s["rtf"] == pytest.approx(0.231 / 3.2)
    assert s["chunks"] == 21
    lat = s["latency"]
    assert (lat["count"], lat["p50_s"], lat["p95_s"], lat["p99_s"], lat["max_s"]) == (
        20, pytest.approx(0.0105), pytest.approx(0.01905), pytest.approx(0.01981), pytest.approx(0.020))
    assert s["p99_of_chunk"] == pytest.approx(0.01981 / 0.16)
    assert s["cpu_latency"]["p50_s"] == pytest.approx(0.00525) and s["cpu_s"] == pytest.approx(0.1155)
    assert s["parts_s"] == {"features": 0.0, "encoder": pytest.approx(0.210), "heads": 0.0,
                            "decoding": pytest.approx(0.0)}
    assert s["tokens_per_s"] == pytest.approx(3 / 3.2)


def test_harness_samples_rss_between_blocks():
    _, trace = scripted_run(rss_every=5)
    np.testing.assert_allclose(trace.rss_at_s, [0.0, 0.8, 1.6, 2.4, 3.2, 3.2])
    assert trace.rss_bytes.tolist() == [1000, 1010, 1020, 1030, 1040, 1050]
    assert rss_growth(trace.rss_at_s, trace.rss_bytes, 1.0).growth_bytes == 30  # from 1.6 s to the end


def test_looped_audio_wraps_without_copies_of_the_whole():
    audio = LoopedAudio(np.arange(5, dtype=np.float32), 16000)
    assert [b.tolist() for b in audio.blocks(3, 12)] == [[0, 1, 2], [3, 4, 0], [1, 2, 3], [4, 0, 1]]
    assert [b.tolist() for b in audio.blocks(4, 6)] == [[0, 1, 2, 3], [4, 0]]


def _run(label, engine, backend, precision, lookahead, rtf_value, paired=None, long=False):
    run = {"spec": {"label": label, "engine": engine, "backend": backend, "precision": precision,
                    "decoder": None, "paired_with": paired},
           "lookahead_ms": lookahead, "summary": {"rtf": rtf_value}}
    return {**run, "long": {}} if long else run


def test_comparisons_against_ort_fp32_and_sherpa():
    runs = [
        _run("onnx fp32 480 ms", "ouvir", "onnx", "fp32", 480, 0.02),
        _run("sherpa-onnx fp32 480 ms", "sherpa-onnx", "onnx", "fp32", 480, 0.025, paired="onnx fp32 480 ms"),
        _run("pte int8 480 ms", "ouvir", "pte", "int8", 480, 0.01),
        _run("pte int8 80 ms", "ouvir", "pte", "int8", 80, 0.03),
        _run("onnx fp32 480 ms long", "ouvir", "onnx", "fp32", 480, 0.03, long=True),
    ]
    got = {c["label"]: c for c in comparisons(runs)}
    assert got["onnx fp32 480 ms"]["vs_onnx_fp32"] == 1.0
    assert got["pte int8 480 ms"]["vs_onnx_fp32"] == 0.5
    assert "vs_onnx_fp32" not in got["pte int8 80 ms"]  # no ORT fp32 run at 80 ms
    assert got["sherpa-onnx fp32 480 ms"]["ouvir_over_sherpa"] == pytest.approx(0.8)
    assert "vs_onnx_fp32" not in got["sherpa-onnx fp32 480 ms"]
    assert got["onnx fp32 480 ms long"]["vs_onnx_fp32"] == pytest.approx(1.5)  # against the short run


def test_report_files_hold_the_measured_values(tmp_path):
    engine, trace = scripted_run(rss_every=5)
    summary = summarize(trace, 0.16, engine.has_parts)
    run = {
        "spec": {"label": "scripted fp32", "engine": "ouvir", "backend": "onnx", "precision": "fp32",
                 "decoder": "rnnt", "paired_with": None},
        "lookahead_ms": 80, "load_s": 0.25, "model_bytes": 3 << 20,
        "load_average": {"before": [3.5, 1.0, 1.0], "after": [2.0, 1.0, 1.0]},
        "rss": {"start_bytes": 0, "loaded_bytes": 0, "peak_bytes": 100 << 20},
        "summary": summary,
        "series": {"at_s": trace.at_s.tolist(), "latency_s": trace.latency_s.tolist(), "chunks": trace.chunks.tolist()},
    }
    long_run = {**run, "spec": {**run["spec"], "label": "scripted fp32 long"}, "long": {
        "drift": latency_drift(trace.at_s, trace.latency_s, trace.audio_s).to_dict(),
        "rss_growth": rss_growth(trace.rss_at_s, trace.rss_bytes, 1.0).to_dict(),
        "rss_series": {"at_s": trace.rss_at_s.tolist(), "bytes": trace.rss_bytes.tolist()},
    }}
    machine = {"cpu": "Test CPU", "logical_cores": 2, "usable_cores": 2, "threads": 2, "load_average": [0.5, 0, 0],
               "platform": "test"}
    audio = {"file": "a.wav", "seconds": 3.2, "warmup_s": 0.0}
    report = build_report(["ouvir", "bench"], machine, {"name": "scripted"}, audio, [run, long_run],
                          ["torch int8: x"], ["pte int8 dynamic: export failed (y)"])
    write_json(report, tmp_path / "bench.json")
    back = json.loads((tmp_path / "bench.json").read_text())
    assert back["runs"][0]["summary"]["rtf"] == pytest.approx(0.231 / 3.2)
    assert back["machine"]["cpu"] == "Test CPU" and back["machine"]["threads"] == 2
    assert back["comparisons"][0]["vs_onnx_fp32"] == 1.0
    md = markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| scripted fp32 |"))
    assert row.split(" | ")[1:7] == ["0.072", "10.50", "19.05", "19.81", "12.4%", "160.00"]
    # 0.53 s windows (a sixth of 3.2 s): chunks 1-3 (median 2 ms) and 17-20 (median 18.5 ms)
    assert "first 0.0 min 2.00 ms, last 0.0 min 18.50 ms, ratio 9.250" in md
    assert "RSS growth +0.00 MB" in md
    assert "Test CPU" in md and "Skipped: torch int8: x" in md
    assert "**Failed**: pte int8 dynamic: export failed (y)" in md
    assert "load average reached 3.5 on 2 cores" in md
    written = write_plots(report, tmp_path)
    assert [p.name for p in written] == ["rtf.png", "latency.png", "long_run.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_configurations_skip_torch_int8_and_list_int8_methods():
    configs, skipped = configurations(["torch", "onnx"], ["none", "int8"], [480, 80], ["dynamic"])
    assert [c.label for c in configs] == ["torch fp32 480 ms", "onnx fp32 480 ms", "onnx int8 dynamic 480 ms",
                                          "torch fp32 80 ms", "onnx fp32 80 ms", "onnx int8 dynamic 80 ms"]
    assert skipped == ["torch int8: the torch backend runs fp32 only"]
    configs, _ = configurations(["pte"], ["int8"], [None], ["dynamic", "static"])
    assert configs == [Config("pte", "int8", None, "dynamic"), Config("pte", "int8", None, "static")]
    assert configs[1].label == "pte int8 static"


def test_large_contexts_and_blank_calibration_search():
    assert context_for(480) == (70, 6) and context_for(80) == (70, 1) and context_for(1040) == (70, 13)
    with pytest.raises(ValueError, match="no \\[70, r\\] context"):
        context_for(160)  # r = 2: 70 % 3 != 0
    rate = lambda shift: max(0.0, 2.0 - shift / 2)  # noqa: E731 - tokens per frame, decreasing in the shift
    x = solve_decreasing(rate, 0.25, iters=20)
    assert rate(x) <= 0.25 and x == pytest.approx(3.5, abs=1e-4)


def test_cpu_model_from_cpuinfo():
    assert cpu_model("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n") == "Intel(R) Xeon(R) Processor"
    pi = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert cpu_model(pi) == "Raspberry Pi 4 Model B Rev 1.4"


def test_device_cuda_reaches_the_backend_or_says_why(nemo_dir, tmp_path, capsys):
    """``--device cuda``: pte runs are skipped (XNNPACK is CPU only); the torch run gets the GPU, or fails by
    name where there is none, and the other configurations' report is still written."""
    import torch

    from ouvir.engine.cli import main

    args = ["bench", "--model", str(nemo_dir / "hybrid_multi.nemo"), "--audio", str(nemo_dir / "test_audio.wav"),
            "--device", "cuda", "--seconds", "2", "--warmup-s", "0", "--threads", "1", "--out", str(tmp_path)]
    assert main([*args, "--backend", "pte"]) == 1
    assert "pte fp32 on cuda: ExecuTorch's XNNPACK runs on the CPU" in capsys.readouterr().err
    code = main([*args, "--backend", "torch"])
    if torch.cuda.is_available():
        assert code == 0
        report = json.loads((tmp_path / "bench.json").read_text())
        assert report["runs"][0]["spec"]["label"] == "torch fp32 cuda" and report["machine"]["gpus"]
    else:
        assert code == 1 and "torch fp32 cuda: failed (RuntimeError: device cuda: torch" in capsys.readouterr().err


def test_paths_are_recorded_relative_to_the_project_or_by_name(tmp_path):
    project = tmp_path / "project"
    report = {"command": ["/usr/local/bin/ouvir", "bench", "--out", "/tmp/runs/large", "--audio", "a/b.wav"],
              "audio": {"conversion": f"file {project}/tests/speech.wav: 16-bit PCM_16, 1 ch (mono)"},
              "runs": [{"spec": {"model": "/root/.cache/ouvir/bench/ab12/onnx-int8-480", "threads": 2}}],
              "rate": "3.5 tokens/s, 1/2 of https://example.org/x"}
    assert portable_paths(report, project) == {
        "command": ["ouvir", "bench", "--out", "large", "--audio", "a/b.wav"],
        "audio": {"conversion": "file tests/speech.wav: 16-bit PCM_16, 1 ch (mono)"},
        "runs": [{"spec": {"model": "onnx-int8-480", "threads": 2}}],
        "rate": "3.5 tokens/s, 1/2 of https://example.org/x"}
    shipped = Path(str(files("ouvir.engine.bench"))) / "data" / "test_audio.wav"
    assert portable(shipped, tmp_path) == "ouvir/engine/bench/data/test_audio.wav"


def test_bench_runs_outside_a_checkout_on_shipped_speech(nemo_dir, tmp_path):
    """Without --audio, from a directory that is not a checkout: the bench streams speech shipped in the package
    (CI installs it non-editable, so a file missing from the package data fails here), and --config large
    reads the recipe shipped there. The report holds no absolute path."""
    import yaml

    from ouvir.engine.bench.cli import default_audio
    from ouvir.models.large import RECIPE, large_config, recipe_path

    repo_tests = Path(__file__).resolve().parents[1]
    for shipped in (default_audio(), recipe_path()):
        assert shipped.is_file() and repo_tests not in shipped.parents
    assert default_audio().read_bytes() == (nemo_dir / "test_audio.wav").read_bytes()
    assert yaml.safe_load(recipe_path().read_text()) == yaml.safe_load((nemo_dir / "conf" / RECIPE).read_text())
    cfg = large_config([(70, 6), (70, 1)], tuple(f"p{i}" for i in range(1024)))
    assert (cfg.encoder.n_layers, cfg.encoder.d_model, cfg.encoder.att_context_size) == (17, 512, ((70, 6), (70, 1)))

    model = tmp_path / "m.nemo"
    shutil.copy(nemo_dir / "hybrid_multi.nemo", model)
    env = {k: v for k, v in os.environ.items() if k != "OUVIR_NEMO_FIXTURES"} | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(OUVIR), "bench", "--model", str(model), "--seconds", "1", "--warmup-s", "0",
                          "--threads", "1", "--lookahead-ms", "80", "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "report" / "bench.json").read_text()
    report = json.loads(text)
    assert report["audio"]["file"] == "ouvir/engine/bench/data/test_audio.wav" and report["audio"]["file_s"] == 8.0
    assert report["command"][:4] == ["ouvir", "bench", "--model", "m.nemo"] and report["model"]["name"] == "m.nemo"
    assert report["runs"][0]["summary"]["audio_s"] == 1.0
    assert str(tmp_path) not in text and str(Path.home()) not in text


def test_committed_reports_hold_no_absolute_paths():
    """The reports under bench/ (benchmarks, the default model's evaluations, the human-speech comparison) record
    paths relative to the project or by name."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    reports = [p for p in bench.rglob("*") if p.suffix in (".json", ".md")]
    assert len(reports) >= 10
    for path in reports:
        text = path.read_text()
        assert portable_paths(text, Path("/nonexistent")) == text, path
