"""The training history (runs appended across restarts read as one curve) and the step profiler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ouvir.models.train.history import add_run, plot_history
from ouvir.models.train.plot import read_log


def _run(folder: Path, steps: int, seconds: float, wers: list[float], ctc_only: bool) -> Path:
    folder.mkdir()
    records = [{"kind": "start", "step": 0, "device": "cpu", "recipe": {"ctc_weight": 1.0 if ctc_only else 0.3}}]
    for i, wer in enumerate(wers, start=1):
        step = steps * i // len(wers)
        records.append({"kind": "train", "step": step, "loss": 10.0 / i, "elapsed_s": seconds * i / len(wers)})
        records.append({"kind": "val", "step": step, "wer_rnnt": 1.0 if ctc_only else wer, "wer_ctc": wer})
    records.append({"kind": "stop", "step": steps, "reason": "max_minutes", "elapsed_s": seconds})
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_runs_append_with_steps_and_hours_carried_on(tmp_path: Path) -> None:
    history = tmp_path / "history"
    assert add_run(_run(tmp_path / "a", 1000, 1800.0, [0.9, 0.5], ctc_only=True), "a", history) == 6
    assert add_run(_run(tmp_path / "b", 400, 3600.0, [0.4, 0.2], ctc_only=False), "b", history) == 6
    records = read_log(history / "log.jsonl")
    stop_a, stop_b = (r for r in records if r["kind"] == "stop")
    assert (stop_a["global_step"], stop_a["hours"]) == (1000, 0.5)
    assert (stop_b["global_step"], stop_b["hours"]) == (1400, 1.5)
    val_b = [r for r in records if r["phase"] == "b" and r["kind"] == "val"]
    assert [(r["global_step"], r["hours"]) for r in val_b] == [(1200, 1.0), (1400, 1.5)]
    png = plot_history(history)
    assert png.stat().st_size > 10_000


def test_a_phase_is_added_once_and_only_when_finished(tmp_path: Path) -> None:
    history = tmp_path / "history"
    run = _run(tmp_path / "a", 10, 60.0, [0.9], ctc_only=True)
    add_run(run, "a", history)
    with pytest.raises(ValueError, match="already holds phase 'a'"):
        add_run(run, "a", history)
    unfinished = tmp_path / "u"
    unfinished.mkdir()
    (unfinished / "log.jsonl").write_text(json.dumps({"kind": "start", "step": 0}) + "\n")
    with pytest.raises(ValueError, match="no 'stop' record"):
        add_run(unfinished, "u", history)


def test_profile_times_every_phase_of_a_step(tmp_path: Path) -> None:
    from ouvir.models.train.profile import main

    main(["--threads", "1", "--batch-seconds", "7", "--rounds", "1", "--out", str(tmp_path / "p.json")])
    report = json.loads((tmp_path / "p.json").read_text())
    rows = report["1 threads"]
    assert set(rows) == {"encoder forward", "ctc-only step", "rnnt-head step (frozen encoder)", "hybrid step",
                         "log-mel", "online augment (all transforms)"}
    assert all(r["ms"] > 0 and r["audio_s_per_s"] > 0 for r in rows.values())
