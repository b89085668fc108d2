"""Randomly initialised checkpoints of real model architectures.

Model hubs are out of reach in tests and on air-gapped machines, so tests and the
benchmark build a model from the backend's own config class, save it to a folder, and
load it back through the same ``from_pretrained`` path that loads a real checkpoint.
The sizes mirror the published checkpoints, so timings are those of the real models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NINE_QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
CHRONOS2_QUANTILES = [0.01, 0.05, *NINE_QUANTILES, 0.95, 0.99]

# (d_model, d_ff, layers, heads) of the published T5-efficient backbones.
_BOLT_SIZES = {
    "test": (32, 64, 1, 2),
    "tiny": (256, 1024, 4, 4),
    "mini": (384, 1536, 4, 8),
    "small": (512, 2048, 6, 8),
    "base": (768, 3072, 12, 12),
}
_CHRONOS2_SIZES = {"test": (32, 64, 1, 2), "base": (768, 3072, 12, 12)}
_T5_SIZES = {"test": (32, 64, 1, 2), "tiny": (256, 1024, 4, 4), "small": (512, 2048, 6, 8)}


def chronos_bolt(folder: str | Path, size: str = "test", seed: int = 0) -> Path:
    import torch
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config as _T5Config

    T5Config: Any = _T5Config  # its keyword arguments are not typed

    d_model, d_ff, layers, heads = _BOLT_SIZES[size]
    config = T5Config(
        d_model=d_model, d_ff=d_ff, d_kv=d_model // heads, num_layers=layers,
        num_decoder_layers=layers, num_heads=heads, vocab_size=2, pad_token_id=0,
        decoder_start_token_id=0, feed_forward_proj="relu", dropout_rate=0.0,
        chronos_pipeline_class="ChronosBoltPipeline",
        architectures=["ChronosBoltModelForForecasting"],
        chronos_config={
            "context_length": 2048, "prediction_length": 64, "input_patch_size": 16,
            "input_patch_stride": 16, "quantiles": NINE_QUANTILES, "use_reg_token": True,
        },
    )
    torch.manual_seed(seed)
    return _save(ChronosBoltModelForForecasting(config), folder)


def chronos2(folder: str | Path, size: str = "test", seed: int = 0) -> Path:
    import torch
    from chronos.chronos2.config import Chronos2CoreConfig
    from chronos.chronos2.model import Chronos2Model

    d_model, d_ff, layers, heads = _CHRONOS2_SIZES[size]
    config = Chronos2CoreConfig(
        d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
        num_heads=heads, dropout_rate=0.0,
        chronos_pipeline_class="Chronos2Pipeline", architectures=["Chronos2Model"],
        chronos_config={
            "context_length": 8192, "input_patch_size": 16, "input_patch_stride": 16,
            "output_patch_size": 16, "max_output_patches": 64,
            "quantiles": CHRONOS2_QUANTILES, "use_reg_token": True, "use_arcsinh": True,
        },
    )
    torch.manual_seed(seed)
    return _save(Chronos2Model(config), folder)


def chronos_t5(folder: str | Path, size: str = "test", seed: int = 0) -> Path:
    import torch
    from transformers import T5Config as _T5Config
    from transformers import T5ForConditionalGeneration

    T5Config: Any = _T5Config  # its keyword arguments are not typed

    d_model, d_ff, layers, heads = _T5_SIZES[size]
    n_tokens = 4096
    config = T5Config(
        d_model=d_model, d_ff=d_ff, d_kv=d_model // heads, num_layers=layers,
        num_decoder_layers=layers, num_heads=heads, vocab_size=n_tokens, pad_token_id=0,
        eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0,
        architectures=["T5ForConditionalGeneration"],
        chronos_config={
            "tokenizer_class": "MeanScaleUniformBins",
            "tokenizer_kwargs": {"low_limit": -15.0, "high_limit": 15.0},
            "context_length": 512, "prediction_length": 64, "n_tokens": n_tokens,
            "n_special_tokens": 2, "pad_token_id": 0, "eos_token_id": 1,
            "use_eos_token": True, "model_type": "seq2seq", "num_samples": 20,
            "temperature": 1.0, "top_k": 50, "top_p": 1.0,
        },
    )
    torch.manual_seed(seed)
    return _save(T5ForConditionalGeneration(config), folder)


def timesfm_2p5(folder: str | Path, size: str = "200m", seed: int = 0) -> Path:
    """TimesFM 2.5 has one published size (200M parameters, about 0.9 GB on disk)."""
    import timesfm
    import torch

    torch.manual_seed(seed)
    model = timesfm.TimesFM_2p5_200M_torch(torch_compile=False)
    path = Path(folder)
    model.save_pretrained(path)
    return path


# (embedding_dim, heads, blocks, input_ff_dim); "base" is the published TiRex (35M).
_TIREX_SIZES = {"test": (32, 2, 1, 64), "base": (512, 4, 12, 2048)}


def tirex(folder: str | Path, size: str = "test", seed: int = 0) -> Path:
    """A Lightning-style ``model.ckpt``, the file TiRex's loader reads."""
    import torch
    from tirex.models.tirex import TiRexZero

    embedding, heads, blocks, feed_forward = _TIREX_SIZES[size]
    hyper = {
        "model_config": {
            "input_patch_size": 32, "output_patch_size": 32, "quantiles": NINE_QUANTILES,
            "block_kwargs": {"embedding_dim": embedding, "num_heads": heads,
                             "num_blocks": blocks},
            "input_ff_dim": feed_forward,
        },
        "train_ctx_len": 2048,
    }
    torch.manual_seed(seed)
    model = TiRexZero(backend="torch", **hyper)
    for parameter in model.parameters():
        if parameter.dim() > 1:
            torch.nn.init.xavier_uniform_(parameter)  # the class leaves some weights empty
        else:
            torch.nn.init.zeros_(parameter)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": hyper, "state_dict": model.state_dict()}, path / "model.ckpt")
    return path


BUILDERS = {"chronos-bolt": chronos_bolt, "chronos-2": chronos2, "chronos-t5": chronos_t5,
            "timesfm-2.5": timesfm_2p5, "tirex": tirex}


def build(kind: str, folder: str | Path, size: str = "test", seed: int = 0) -> Path:
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown architecture {kind!r}; known: {', '.join(BUILDERS)}") from None
    return builder(folder, size, seed)


def _save(model: Any, folder: str | Path) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(path)
    return path
