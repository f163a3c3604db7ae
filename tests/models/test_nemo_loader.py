"""``load_nemo``: hybrid, CTC-only and RNNT-only layouts, the explicit key table, and every refusal."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
import yaml

from ouvir.models.archive import ArchiveError, read_members
from ouvir.models.asr import CheckpointError
from ouvir.models.config import UnsupportedConfig
from ouvir.models.decoding import rnnt_greedy, rnnt_initial_state
from ouvir.models.nemo import head_key_table, load_nemo
from tests.conftest import NEMO_FIXTURES


def _members(name: str) -> dict[str, bytes]:
    return read_members(NEMO_FIXTURES / f"{name}.nemo", lambda n: True)


def _weights(members: dict[str, bytes]) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(members["model_weights.ckpt"]), weights_only=True)


def _write_nemo(path, members: dict[str, bytes], weights: dict | None = None, config: dict | None = None):
    members = dict(members)
    if weights is not None:
        buf = io.BytesIO()
        torch.save(weights, buf)
        members["model_weights.ckpt"] = buf.getvalue()
    if config is not None:
        members["model_config.yaml"] = yaml.safe_dump(config, allow_unicode=True).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def hybrid_members(nemo_dir):
    return _members("hybrid_multi")


def test_hybrid_layout(nemo_dir):
    loaded = load_nemo(nemo_dir / "hybrid_multi.nemo")
    cfg, m = loaded.config, loaded.model
    assert cfg.encoder.att_context_size == ((70, 13), (70, 6), (70, 1), (70, 0))
    assert cfg.decoders == ("rnnt", "ctc") and cfg.blank_id == 128 and len(cfg.vocabulary) == 128
    assert not m.training and m.ctc is not None and m.predictor is not None and m.joint is not None
    sd = _weights(_members("hybrid_multi"))
    np.testing.assert_array_equal(loaded.window, sd["preprocessor.featurizer.window"].numpy())
    np.testing.assert_array_equal(loaded.fb, sd["preprocessor.featurizer.fb"][0].numpy())
    assert loaded.window.shape == (400,) and loaded.fb.shape == (80, 257)
    ours = m.state_dict()
    for nemo_key, our_key in head_key_table(cfg, "ctc_decoder").items():
        torch.testing.assert_close(ours[our_key], sd[nemo_key], rtol=0, atol=0)
    torch.testing.assert_close(ours["encoder.layers.2.self_attn.pos_bias_u"],
                               sd["encoder.layers.2.self_attn.pos_bias_u"], rtol=0, atol=0)
    assert sum(p.numel() for p in m.parameters()) == 360434  # NeMo's num_parameters
    z = np.load(nemo_dir / "hybrid_multi_reference.npz")
    with torch.no_grad():
        enc, enc_len = m.encoder(torch.from_numpy(z["preproc.features"]), torch.tensor([800]), context=(70, 6))
        log_probs = m.ctc(enc)
    np.testing.assert_allclose(enc.numpy(), z["offline.c70_6.encoded"], atol=1e-4)
    np.testing.assert_allclose(log_probs.numpy(), z["offline.c70_6.ctc_log_probs"], atol=1e-3)
    assert enc_len.tolist() == [101]


def test_ctc_only_layout(nemo_dir):
    loaded = load_nemo(nemo_dir / "ctc_conformer.nemo")
    assert loaded.config.decoders == ("ctc",) and loaded.model.predictor is None and loaded.model.joint is None
    sd = _weights(_members("ctc_conformer"))
    assert "decoder.decoder_layers.0.weight" in sd and not any(k.startswith("ctc_decoder.") for k in sd)
    torch.testing.assert_close(loaded.model.ctc.conv.weight, sd["decoder.decoder_layers.0.weight"], rtol=0, atol=0)
    assert loaded.tokenizer.decode([4, 37, 61, 50, 44, 49, 58, 12, 43, 42, 52, 41, 17, 42, 60]) == "the quick brown fox"


def test_rnnt_only_layout(tmp_path, hybrid_members):
    """An RNNT model (EncDecRNNTBPEModel): the hybrid without aux_ctc and ctc_decoder.* weights."""
    config = yaml.safe_load(hybrid_members["model_config.yaml"])
    del config["aux_ctc"]
    weights = {k: v for k, v in _weights(hybrid_members).items() if not k.startswith("ctc_decoder.")}
    loaded = load_nemo(_write_nemo(tmp_path / "rnnt.nemo", hybrid_members, weights, config))
    assert loaded.config.decoders == ("rnnt",) and loaded.model.ctc is None
    z = np.load(NEMO_FIXTURES / "hybrid_multi_reference.npz")
    m = loaded.model
    with torch.no_grad():
        hyp, _ = rnnt_greedy(m.predictor, m.joint, torch.from_numpy(z["offline.c70_13.encoded"]), torch.tensor([101]),
                             rnnt_initial_state(m.predictor, m.joint, 1), loaded.config.rnnt.max_symbols)
    assert hyp.tokens[0] == z["offline.c70_13.rnnt_token_ids"].tolist()


def test_unused_missing_and_misshapen_keys_are_named(tmp_path, hybrid_members):
    sd = _weights(hybrid_members)
    extra = {**sd, "encoder.layers.0.extra.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"unused NeMo keys: \['encoder\.layers\.0\.extra\.weight'\]"):
        load_nemo(_write_nemo(tmp_path / "extra.nemo", hybrid_members, extra))
    missing = {k: v for k, v in sd.items() if k not in ("joint.enc.bias", "encoder.layers.1.norm_out.weight")}
    with pytest.raises(CheckpointError, match=r"missing NeMo keys: \['encoder\.layers\.1\.norm_out\.weight', "
                                              r"'joint\.enc\.bias'\]"):
        load_nemo(_write_nemo(tmp_path / "missing.nemo", hybrid_members, missing))
    bad = {**sd, "joint.pred.weight": torch.zeros(48, 31)}
    with pytest.raises(CheckpointError, match=r"joint\.pred\.weight has shape \(48, 31\), joint\.pred\.weight needs"):
        load_nemo(_write_nemo(tmp_path / "shape.nemo", hybrid_members, bad))
    no_fb = {k: v for k, v in sd.items() if k != "preprocessor.featurizer.fb"}
    with pytest.raises(CheckpointError, match=r"missing NeMo key preprocessor\.featurizer\.fb"):
        load_nemo(_write_nemo(tmp_path / "nofb.nemo", hybrid_members, no_fb))


def test_ctc_weights_under_the_wrong_prefix_are_refused(tmp_path, hybrid_members):
    sd = _weights(hybrid_members)
    moved = {k.replace("ctc_decoder.", "decoder."): v for k, v in sd.items()}
    with pytest.raises(CheckpointError, match=r"unused NeMo keys: \['decoder\.decoder_layers\.0\.bias'"):
        load_nemo(_write_nemo(tmp_path / "moved.nemo", hybrid_members, moved))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_pickled_code_is_refused(tmp_path, hybrid_members, capsys):
    sd = {**_weights(hybrid_members), "evil": _Payload()}
    with pytest.raises(CheckpointError, match=r"model_weights\.ckpt: refused or unreadable"):
        load_nemo(_write_nemo(tmp_path / "pickle.nemo", hybrid_members, sd))
    assert "code ran" not in capsys.readouterr().out


def test_tokenizer_and_config_problems(tmp_path, hybrid_members):
    tok = next(n for n in hybrid_members if n.endswith("tokenizer.model"))
    without = {k: v for k, v in hybrid_members.items() if k != tok}
    with pytest.raises(ArchiveError, match=r"expected one \*tokenizer\.model .* found \[\]"):
        load_nemo(_write_nemo(tmp_path / "notok.nemo", without))
    with pytest.raises(ArchiveError, match=r"found \['a_tokenizer\.model', 'b_tokenizer\.model'\]"):
        load_nemo(_write_nemo(tmp_path / "twotok.nemo", {**without, "a_tokenizer.model": hybrid_members[tok],
                                                          "b_tokenizer.model": hybrid_members[tok]}))
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_nemo(_write_nemo(tmp_path / "badtok.nemo", {**without, "x_tokenizer.model": b"not a model"}))
    config = yaml.safe_load(hybrid_members["model_config.yaml"])
    config["joint"]["vocabulary"] = list(reversed(config["joint"]["vocabulary"]))
    with pytest.raises(UnsupportedConfig, match=r"vocabulary \(128 entries\) differs from the tokenizer"):
        load_nemo(_write_nemo(tmp_path / "vocab.nemo", hybrid_members, config=config))
    with pytest.raises(ArchiveError, match=r"no model_weights\.ckpt member"):
        load_nemo(_write_nemo(tmp_path / "noweights.nemo",
                              {k: v for k, v in hybrid_members.items() if k != "model_weights.ckpt"}))


def test_unsafe_nemo_is_refused_before_loading(tmp_path, hybrid_members):
    path = _write_nemo(tmp_path / "evil.nemo", hybrid_members)
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(ArchiveError, match=r"path traversal in '\.\./\.\./outside\.txt'"):
        load_nemo(path)
    assert not (tmp_path.parent / "outside.txt").exists()
