"""The parity CLI: exit 0 on both NeMo fixtures; non-zero on a perturbed, a truncated or an unknown reference."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

from ouvir.models.nemo import load_nemo
from ouvir.models.parity import compare, required_keys
from ouvir.models.parity_run import produce
from tests.conftest import FIXTURE_MODELS, NEMO_FIXTURES


def _cli(model: str, npz) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ouvir.models.parity", str(NEMO_FIXTURES / f"{model}.nemo"), str(npz),
           "--audio", str(NEMO_FIXTURES / "test_audio.wav")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _reference(model: str) -> dict[str, np.ndarray]:
    with np.load(NEMO_FIXTURES / f"{model}_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_cli_passes_on_fixture(nemo_dir, model):
    run = _cli(model, nemo_dir / f"{model}_reference.npz")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    groups = [ln for ln in lines if ln.startswith("ok ")]
    assert lines[-1] == f"parity: {len(groups)} groups, 0 failed"
    assert len(groups) == (207 if model == "hybrid_multi" else 53)
    steps = next(ln for ln in groups if ".step*.encoded " in ln)
    assert steps.endswith("keys 8") if model == "hybrid_multi" else steps.endswith("keys 26")
    features = next(ln for ln in groups if ln.split()[1] == "preproc.features")
    assert float(features.split()[3]) < 1e-3


def test_cli_fails_on_perturbed_and_missing_groups(tmp_path, nemo_dir):
    ref = _reference("ctc_conformer")
    perturbed = {**ref, "stream.c64_7.step010.encoded": ref["stream.c64_7.step010.encoded"] + 3e-4}
    np.savez(tmp_path / "perturbed.npz", **perturbed)
    run = _cli("ctc_conformer", tmp_path / "perturbed.npz")
    assert run.returncode == 1
    assert [ln.split()[:2] for ln in run.stdout.splitlines() if ln.startswith("FAIL")] == [
        ["FAIL", "stream.c64_7.step*.encoded"]]
    missing = {k: v for k, v in ref.items() if k != "offline.c64_7.ctc_log_probs"}
    np.savez(tmp_path / "missing.npz", **missing)
    run = _cli("ctc_conformer", tmp_path / "missing.npz")
    assert run.returncode == 1
    assert "MISSING offline.c64_7.ctc_log_probs" in run.stdout
    assert run.stdout.splitlines()[-1] == "parity: 53 groups, 1 failed"


@functools.cache
def _hybrid():
    loaded = load_nemo(NEMO_FIXTURES / "hybrid_multi.nemo")
    ref = _reference("hybrid_multi")
    return loaded, ref, produce(loaded, NEMO_FIXTURES / "test_audio.wav", set(ref))


def _failures(reference, produced, loaded) -> dict[str, str]:
    results = compare(reference, produced, required_keys(set(reference), produced, loaded))
    return {r.group: r.status for r in results if not r.ok}


def test_every_hybrid_group_is_checked_and_failures_are_named(nemo_dir, one_torch_thread):
    loaded, ref, produced = _hybrid()
    assert _failures(ref, produced, loaded) == {}
    label = ref["stream.c70_13.step004.rnnt_state.label"]
    assert _failures({**ref, "stream.c70_13.step004.rnnt_state.label": label + 1}, produced, loaded) == {
        "stream.c70_13.step*.rnnt_state.label": "FAIL"}
    state = ref["offline.c70_1.rnnt_final_state.pred_output"]
    assert _failures({**ref, "offline.c70_1.rnnt_final_state.pred_output": state + 2e-4}, produced, loaded) == {
        "offline.c70_1.rnnt_final_state.pred_output": "FAIL"}
    tokens = ref["stream.c70_0.rnnt_token_ids"]
    assert _failures({**ref, "stream.c70_0.rnnt_token_ids": tokens[:-1]}, produced, loaded) == {
        "stream.c70_0.rnnt_token_ids": "FAIL"}  # shape differs
    nan = produced["stream.c70_6.final.cache_last_time"].copy()
    nan[0, 0, 0, 0] = np.nan
    assert _failures(ref, {**produced, "stream.c70_6.final.cache_last_time": nan}, loaded) == {
        "stream.c70_6.final.cache_last_time": "FAIL"}
    chunk = ref["stream.c70_13.step003.chunk"]
    assert _failures({**ref, "stream.c70_13.step003.chunk": chunk + 2e-3}, produced, loaded) == {
        "stream.c70_13.step*.chunk": "FAIL"}


def test_unknown_and_absent_groups_fail(nemo_dir, one_torch_thread):
    loaded, ref, produced = _hybrid()
    unknown = {**ref, "offline.c70_13.beam_token_ids": np.zeros(3, dtype=np.int64)}
    assert _failures(unknown, produced, loaded) == {"offline.c70_13.beam_token_ids": "UNKNOWN"}
    other_context = {**ref, "offline.c35_4.encoded": ref["offline.c70_13.encoded"]}
    failures = _failures(other_context, produced, loaded)
    assert failures["offline.c35_4.encoded"] == "UNKNOWN"
    assert failures["stream.c35_4.encoded_concat"] == "MISSING"
    no_step = {k: v for k, v in ref.items() if k != "stream.c70_13.step005.rnnt_state.pred_state_1"}
    assert _failures(no_step, produced, loaded) == {"stream.c70_13.step*.rnnt_state.pred_state_1": "MISSING"}
    no_rnnt = {k: v for k, v in ref.items() if "rnnt" not in k}
    assert set(_failures(no_rnnt, produced, loaded).values()) == {"MISSING"}
    assert _failures({k: v for k, v in ref.items() if not k.startswith("stream_pad.")}, produced, loaded) == {}


def test_only_requested_contexts_are_produced(nemo_dir, one_torch_thread):
    loaded, ref, _ = _hybrid()
    produced = produce(loaded, NEMO_FIXTURES / "test_audio.wav", {"offline.c70_13.encoded", "offline.c9_2.encoded"})
    assert {k.split(".")[1] for k in produced if k.startswith(("offline.", "stream.c"))} == {"c70_13"}
    assert not any(k.startswith("stream_pad.") for k in produced)
    np.testing.assert_allclose(produced["offline.c70_13.encoded"], ref["offline.c70_13.encoded"], atol=1e-4)
