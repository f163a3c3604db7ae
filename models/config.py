"""Frozen model configs with NeMo's field names, built from a NeMo ``model_config.yaml`` by ``from_nemo``.

Every NeMo key we read is either supported (and validated), or known to matter only for training/data
(listed in ``_TRAINING_ONLY``). Anything else, or an unsupported value, raises ``UnsupportedConfig``
naming the key: nothing is silently defaulted. Absent keys take NeMo's own constructor defaults.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ouvir.engine.features_config import FeatureConfig


class UnsupportedConfig(ValueError):
    """A NeMo setting ouvir does not implement (the message names the key)."""


@dataclass(frozen=True)
class EncoderConfig:
    feat_in: int
    n_layers: int
    d_model: int
    n_heads: int
    att_context_size: tuple[tuple[int, int], ...]  # first entry is the default look-ahead
    subsampling: str = "dw_striding"  # "striding" | "dw_striding"
    subsampling_factor: int = 8
    subsampling_conv_channels: int = -1  # -1 -> d_model
    causal_downsampling: bool = True
    ff_expansion_factor: int = 4
    att_context_style: str = "chunked_limited"
    att_context_probs: tuple[float, ...] | None = None
    xscaling: bool = True
    untie_biases: bool = True
    pos_emb_max_len: int = 5000
    conv_kernel_size: int = 9
    conv_norm_type: str = "layer_norm"  # "layer_norm" | "batch_norm"
    use_bias: bool = True
    dropout: float = 0.1
    dropout_pre_encoder: float = 0.1
    dropout_emb: float = 0.0
    dropout_att: float = 0.1

    @property
    def conv_channels(self) -> int:
        return self.d_model if self.subsampling_conv_channels == -1 else self.subsampling_conv_channels

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def default_context(self) -> tuple[int, int]:
        return self.att_context_size[0]


@dataclass(frozen=True)
class CTCConfig:
    feat_in: int
    num_classes: int  # vocabulary size without blank; the head has num_classes + 1 outputs


@dataclass(frozen=True)
class RNNTConfig:
    vocab_size: int  # without blank; blank id == vocab_size (blank_as_pad)
    pred_hidden: int
    pred_rnn_layers: int
    joint_hidden: int
    encoder_hidden: int
    activation: str = "relu"  # relu | tanh | sigmoid
    max_symbols: int = 10
    pred_dropout: float = 0.2
    joint_dropout: float = 0.2


@dataclass(frozen=True)
class ModelConfig:
    features: FeatureConfig
    encoder: EncoderConfig
    vocabulary: tuple[str, ...]  # SentencePiece pieces, without blank
    ctc: CTCConfig | None = None
    rnnt: RNNTConfig | None = None
    spec_augment: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def blank_id(self) -> int:
        return len(self.vocabulary)

    @property
    def decoders(self) -> tuple[str, ...]:
        return tuple(n for n, c in (("rnnt", self.rnnt), ("ctc", self.ctc)) if c is not None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        enc = dict(d["encoder"])
        enc["att_context_size"] = tuple(tuple(c) for c in enc["att_context_size"])
        if enc.get("att_context_probs") is not None:
            enc["att_context_probs"] = tuple(enc["att_context_probs"])
        return _validate(
            cls(
                features=FeatureConfig.from_dict(d["features"]),
                encoder=EncoderConfig(**enc),
                vocabulary=tuple(d["vocabulary"]),
                ctc=CTCConfig(**d["ctc"]) if d.get("ctc") else None,
                rnnt=RNNTConfig(**d["rnnt"]) if d.get("rnnt") else None,
                spec_augment=dict(d.get("spec_augment") or {}),
            )
        )


# ----------------------------------------------------------------------------------------------- NeMo


_TRAINING_ONLY = {
    "encoder": {"dropout", "dropout_pre_encoder", "dropout_emb", "dropout_att", "_target_",
                "stochastic_depth_drop_prob", "stochastic_depth_mode", "stochastic_depth_start_layer",
                "att_context_probs", "sync_max_audio_length", "use_pytorch_sdpa", "use_pytorch_sdpa_backends"},
    "preprocessor": {"_target_", "dither"},
    "prednet": {"t_max", "dropout", "forget_gate_bias", "weights_init_scale", "hidden_hidden_bias_scale"},
    "joint": {"_target_", "log_softmax", "preserve_memory", "fuse_loss_wer", "fused_batch_size",
              "experimental_fuse_loss_wer", "vocabulary"},
    "jointnet": {"dropout", "encoder_hidden", "pred_hidden"},
    "decoder": {"_target_", "random_state_sampling", "vocab_size"},
    "ctc_decoder": {"_target_", "vocabulary", "feat_in"},
}

# key -> (NeMo default, check) for values whose support is restricted.
_ENCODER_RESTRICTED: dict[str, tuple[Any, Any]] = {
    "feat_out": (-1, lambda v: v == -1),
    "subsampling": ("striding", lambda v: v in ("striding", "dw_striding")),
    "subsampling_factor": (4, lambda v: v in (2, 4, 8, 16)),
    "subsampling_conv_chunking_factor": (1, lambda v: v in (1, -1)),
    "causal_downsampling": (False, lambda v: v is True),
    "self_attention_model": ("rel_pos", lambda v: v == "rel_pos"),
    "att_context_style": ("regular", lambda v: v == "chunked_limited"),
    "conv_norm_type": ("batch_norm", lambda v: v in ("batch_norm", "layer_norm")),
    "conv_context_size": (None, None),  # checked against the kernel below
    "reduction": (None, lambda v: v is None),
    "reduction_position": (None, lambda v: v is None),
    "reduction_factor": (1, lambda v: v == 1),
    "global_tokens": (0, lambda v: v == 0),
    "global_tokens_spacing": (1, lambda v: True),
    "global_attn_separate": (False, lambda v: v is False),
    "stochastic_depth_drop_prob": (0.0, lambda v: True),
}
_ENCODER_PLAIN = {
    "feat_in": None, "n_layers": None, "d_model": None, "n_heads": 4, "att_context_size": None,
    "subsampling_conv_channels": -1, "ff_expansion_factor": 4, "xscaling": True, "untie_biases": True,
    "pos_emb_max_len": 5000, "conv_kernel_size": 31, "use_bias": True,
}


def _reject(section: str, key: str, value: Any, why: str = "is not supported") -> UnsupportedConfig:
    return UnsupportedConfig(f"{section}.{key}={value!r} {why}")


def _check_keys(section: str, cfg: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise UnsupportedConfig(f"{section}: unknown setting(s) {unknown}; ouvir does not implement them")


def _resolve(cfg: Any, root: dict[str, Any]) -> Any:
    """Resolve OmegaConf ``${a.b.c}`` interpolations (example YAMLs use them) against ``root``."""
    if isinstance(cfg, dict):
        return {k: _resolve(v, root) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_resolve(v, root) for v in cfg]
    if isinstance(cfg, str) and (m := re.fullmatch(r"\$\{([\w.]+)\}", cfg.strip())):
        node: Any = root
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise UnsupportedConfig(f"cannot resolve interpolation {cfg!r}")
            node = node[part]
        return _resolve(node, root)
    return cfg


def _context_sizes(value: Any) -> tuple[tuple[int, int], ...]:
    if not value or not isinstance(value, list | tuple):
        raise _reject("encoder", "att_context_size", value, "must list [left, right] look-aheads")
    items = value if isinstance(value[0], list | tuple) else [value]
    out = tuple((int(a), int(b)) for a, b in items)
    for left, right in out:
        if left < 0 or right < 0:
            raise _reject("encoder", "att_context_size", value, "needs limited contexts (no -1)")
        if left % (right + 1):
            raise _reject("encoder", "att_context_size", value, "needs left % (right + 1) == 0")
    return out


def _encoder_from_nemo(cfg: dict[str, Any]) -> EncoderConfig:
    known = set(_ENCODER_RESTRICTED) | set(_ENCODER_PLAIN) | _TRAINING_ONLY["encoder"]
    _check_keys("encoder", cfg, known)
    if cfg.get("_target_", "ConformerEncoder").rsplit(".", 1)[-1] != "ConformerEncoder":
        raise _reject("encoder", "_target_", cfg["_target_"])
    for key, (default, ok) in _ENCODER_RESTRICTED.items():
        if ok is not None and not ok(cfg.get(key, default)):
            raise _reject("encoder", key, cfg.get(key, default))
    for key, default in _ENCODER_PLAIN.items():
        if default is None and key not in cfg:
            raise UnsupportedConfig(f"encoder.{key} is required")
    kernel = int(cfg.get("conv_kernel_size", 31))
    ctx = cfg.get("conv_context_size")
    if ctx is not None and ctx != "causal" and list(ctx) != [kernel - 1, 0]:
        raise _reject("encoder", "conv_context_size", ctx, "is not causal (only 'causal' / [K-1, 0])")
    if ctx is None:
        raise _reject("encoder", "conv_context_size", ctx, "must be 'causal' for cache-aware streaming")
    probs = cfg.get("att_context_probs")
    return EncoderConfig(
        feat_in=int(cfg["feat_in"]),
        n_layers=int(cfg["n_layers"]),
        d_model=int(cfg["d_model"]),
        n_heads=int(cfg.get("n_heads", 4)),
        att_context_size=_context_sizes(cfg["att_context_size"]),
        subsampling=cfg.get("subsampling", "striding"),
        subsampling_factor=int(cfg.get("subsampling_factor", 4)),
        subsampling_conv_channels=int(cfg.get("subsampling_conv_channels", -1)),
        causal_downsampling=True,
        ff_expansion_factor=int(cfg.get("ff_expansion_factor", 4)),
        att_context_style="chunked_limited",
        att_context_probs=tuple(float(p) for p in probs) if probs else None,
        xscaling=bool(cfg.get("xscaling", True)),
        untie_biases=bool(cfg.get("untie_biases", True)),
        pos_emb_max_len=int(cfg.get("pos_emb_max_len", 5000)),
        conv_kernel_size=kernel,
        conv_norm_type=cfg.get("conv_norm_type", "batch_norm"),
        use_bias=bool(cfg.get("use_bias", True)),
        dropout=float(cfg.get("dropout", 0.1)),
        dropout_pre_encoder=float(cfg.get("dropout_pre_encoder", 0.1)),
        dropout_emb=float(cfg.get("dropout_emb", 0.1)),
        dropout_att=float(cfg.get("dropout_att", 0.0)),
    )


def _features_from_nemo(cfg: dict[str, Any]) -> FeatureConfig:
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    restricted = {"log": True, "lowfreq": 0, "highfreq": None, "mel_norm": "slaney", "exact_pad": False,
                  "nb_augmentation_prob": 0.0, "stft_conv": False, "stft_exact_pad": False,
                  "use_grads": False, "rng": None, "nb_max_freq": 4000, "mag_power": 2.0}
    _check_keys("preprocessor", cfg, names | set(restricted) | _TRAINING_ONLY["preprocessor"])
    target = cfg.get("_target_", "AudioToMelSpectrogramPreprocessor").rsplit(".", 1)[-1]
    if target != "AudioToMelSpectrogramPreprocessor":
        raise _reject("preprocessor", "_target_", cfg["_target_"])
    for key, default in restricted.items():
        if key in cfg and cfg[key] != default and key not in ("highfreq", "nb_max_freq", "rng"):
            raise _reject("preprocessor", key, cfg[key])
    if cfg.get("highfreq") not in (None, cfg.get("sample_rate", 16000) / 2):
        raise _reject("preprocessor", "highfreq", cfg["highfreq"])
    kwargs = {k: v for k, v in cfg.items() if k in names}
    if kwargs.get("preemph") is None and "preemph" in kwargs:
        kwargs["preemph"] = 0.0
    try:
        return FeatureConfig(**kwargs).validate()
    except ValueError as e:
        raise UnsupportedConfig(str(e)) from e


def _rnnt_from_nemo(model: dict[str, Any], vocab_size: int, d_model: int) -> RNNTConfig:
    dec, joint = model["decoder"], model["joint"]
    _check_keys("decoder", dec, {"prednet", "blank_as_pad", "normalization_mode"} | _TRAINING_ONLY["decoder"])
    if dec.get("_target_", "RNNTDecoder").rsplit(".", 1)[-1] != "RNNTDecoder":
        raise _reject("decoder", "_target_", dec["_target_"])
    if dec.get("blank_as_pad", True) is not True:
        raise _reject("decoder", "blank_as_pad", dec.get("blank_as_pad"))
    if dec.get("normalization_mode") is not None:
        raise _reject("decoder", "normalization_mode", dec["normalization_mode"])
    pred = dec["prednet"]
    _check_keys("decoder.prednet", pred, {"pred_hidden", "pred_rnn_layers", "rnn_hidden_size"}
                | _TRAINING_ONLY["prednet"])
    if pred.get("rnn_hidden_size", -1) not in (-1, pred["pred_hidden"]):
        raise _reject("decoder.prednet", "rnn_hidden_size", pred["rnn_hidden_size"])
    _check_keys("joint", joint, {"jointnet", "num_classes", "num_extra_outputs"} | _TRAINING_ONLY["joint"])
    if joint.get("_target_", "RNNTJoint").rsplit(".", 1)[-1] != "RNNTJoint":
        raise _reject("joint", "_target_", joint["_target_"])
    if joint.get("num_extra_outputs", 0) != 0:
        raise _reject("joint", "num_extra_outputs", joint["num_extra_outputs"], "(TDT) is not supported")
    net = joint["jointnet"]
    _check_keys("joint.jointnet", net, {"joint_hidden", "activation"} | _TRAINING_ONLY["jointnet"])
    if net.get("activation", "relu") not in ("relu", "tanh", "sigmoid"):
        raise _reject("joint.jointnet", "activation", net["activation"])
    decoding = model.get("decoding") or {}
    if decoding.get("strategy", "greedy_batch") not in ("greedy", "greedy_batch"):
        raise _reject("decoding", "strategy", decoding["strategy"], "(only greedy decoding is implemented)")
    max_symbols = (decoding.get("greedy") or {}).get("max_symbols", 10)
    return RNNTConfig(
        vocab_size=vocab_size,
        pred_hidden=int(pred["pred_hidden"]),
        pred_rnn_layers=int(pred.get("pred_rnn_layers", 1)),
        joint_hidden=int(net["joint_hidden"]),
        encoder_hidden=d_model,
        activation=net.get("activation", "relu"),
        max_symbols=int(max_symbols if max_symbols is not None else 10),
        pred_dropout=float(pred.get("dropout", 0.0)),
        joint_dropout=float(net.get("dropout", 0.0)),
    )


def _ctc_from_nemo(dec: dict[str, Any], vocab_size: int, d_model: int) -> CTCConfig:
    _check_keys("ctc decoder", dec, {"num_classes", "add_blank", "init_mode"} | _TRAINING_ONLY["ctc_decoder"])
    if dec.get("_target_", "ConvASRDecoder").rsplit(".", 1)[-1] != "ConvASRDecoder":
        raise _reject("ctc decoder", "_target_", dec["_target_"])
    n = dec.get("num_classes", -1)
    if n not in (-1, vocab_size):
        raise _reject("ctc decoder", "num_classes", n, f"does not match the vocabulary ({vocab_size})")
    if dec.get("feat_in") not in (None, d_model):
        raise _reject("ctc decoder", "feat_in", dec["feat_in"], f"does not match d_model ({d_model})")
    return CTCConfig(feat_in=d_model, num_classes=vocab_size)


def from_nemo(cfg: dict[str, Any], vocabulary: list[str] | tuple[str, ...] | None = None) -> ModelConfig:
    """Build a ``ModelConfig`` from a NeMo model config (``model_config.yaml`` or an example recipe).

    ``vocabulary`` overrides the config's (e.g. from the SentencePiece model); recipes such as the large
    example YAML carry none.
    """
    root = cfg if "model" not in cfg else {**cfg, **cfg["model"]}
    model = _resolve(cfg.get("model", cfg), root)
    if "encoder" not in model or "preprocessor" not in model:
        raise UnsupportedConfig("not a NeMo ASR model config: 'encoder' and 'preprocessor' are required")
    encoder = _encoder_from_nemo(model["encoder"])
    features = _features_from_nemo(model["preprocessor"])
    if features.features != encoder.feat_in:
        raise _reject("encoder", "feat_in", encoder.feat_in, f"!= preprocessor.features ({features.features})")
    dec = model.get("decoder") or {}
    is_ctc_model = dec.get("_target_", "").endswith("ConvASRDecoder")
    ctc_dec = dec if is_ctc_model else (model.get("aux_ctc") or {}).get("decoder")
    if vocabulary is None:
        vocabulary = (ctc_dec or {}).get("vocabulary") or model.get("joint", {}).get("vocabulary") \
            or model.get("labels")
    if not vocabulary:
        raise UnsupportedConfig("no vocabulary in the config: pass the tokenizer's pieces")
    vocab = tuple(str(v) for v in vocabulary)
    rnnt = None if is_ctc_model or not dec else _rnnt_from_nemo(model, len(vocab), encoder.d_model)
    ctc = _ctc_from_nemo(ctc_dec, len(vocab), encoder.d_model) if ctc_dec else None
    if ctc is None and rnnt is None:
        raise UnsupportedConfig("the config has neither a CTC nor an RNNT decoder")
    return _validate(ModelConfig(features=features, encoder=encoder, vocabulary=vocab, ctc=ctc, rnnt=rnnt,
                                 spec_augment=dict(model.get("spec_augment") or {})))


def _validate(cfg: ModelConfig) -> ModelConfig:
    enc = cfg.encoder
    if enc.d_model % enc.n_heads:
        raise _reject("encoder", "n_heads", enc.n_heads, f"does not divide d_model={enc.d_model}")
    if enc.conv_kernel_size % 2 == 0:
        raise _reject("encoder", "conv_kernel_size", enc.conv_kernel_size, "must be odd")
    if enc.subsampling not in ("striding", "dw_striding"):
        raise _reject("encoder", "subsampling", enc.subsampling)
    if enc.conv_norm_type not in ("layer_norm", "batch_norm"):
        raise _reject("encoder", "conv_norm_type", enc.conv_norm_type)
    return cfg
