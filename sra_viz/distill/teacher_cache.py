"""The teacher cache: the frozen teacher's span side of each training text, computed once per machine.

What SRA's loss terms read from the teacher is, per text, a few vectors per span: the CoMs of the
mapped teacher layers (and of its last layer, for L_KD) and the span masses M_k (saliency ŵ). The
teacher is frozen, so these are a function of the teacher's weights, the text's teacher ids and
token->span map, the pooled layers and the blocks giving their masses, the mass mode, the pooling,
the compute dtype and the device kind; a session reads them here instead of running the teacher.
Span logits on V∩ are not stored: the session recomputes them from the cached last-layer CoMs through
the frozen head (``z = softcap(c W_head[V∩]ᵀ)``), so L_KD is exact. ULD and exact-token KD need
token-level teacher logits: they run the teacher every step and do not use this cache.

Layout of the folder (``sra_viz.paths.teacher_cache_dir()``)::

    index.json        {"version", "shards": {name: {"bytes", "sha256", "keys"}}, "entries": {key: name}}
    index.lock        flock held while shards and the index are written or dropped
    shard-<uuid>.stz  a safetensors file of "<key>/centers/<layer>" (N, D_T) float16 (bfloat16 beyond its
                      range) and "<key>/span_mass/<layer>" (N,) float32, stored losslessly compressed:
                      SHARD_MAGIC ‖ uint64 length ‖ zlib(low bytes ‖ high bytes) (:func:`encode_shard`)

The CoMs are the losses' targets at float16 precision whether they are read here or computed
(:func:`round_targets`, applied to every teacher pass of :func:`teacher_spans`, cached or not), so a
warm run equals a cold one and a run without the cache, and the cache holds half the bytes of float32.
Splitting the 2-byte values into byte planes lets zlib find the redundancy of the high bytes (sign,
exponent): a shard takes ~13 % fewer bytes than its safetensors file (plain zlib on it: ~8 %),
and inflating one costs about a millisecond per batch of 4 texts (writing: ~10 ms). No format that runs
code on read (pickle) is involved.

Key of a text: sha256 of the context (teacher architecture, config and weights hash, layer -> mass block,
mass mode, pooling, dtype, device kind, ``CACHE_VERSION``) and the text's teacher ids and token->span
index. The text, the student tokenizer, ``max_length`` and the prompt rule enter through those two
(:func:`.batch.prepare_example` derives them); nothing else changes the teacher side.

Writes go to a temporary file renamed into place, under the lock, then the least recently used shards
(file mtime, touched on each read) are dropped until the folder holds at most its byte limit. Reads check
the shard's size and sha256 against the index, then its zlib stream (adler32, exact inflated length),
its safetensors header and each tensor's name, shape and dtype; a shard that fails is
reported (:class:`TeacherCacheWarning`), dropped, and its texts recomputed: never read as data.

Example:
    >>> cache = TeacherCache(paths.teacher_cache_dir(), limit_bytes=2 << 30)  # doctest: +SKIP
    >>> spans = teacher_spans(pair.teacher, batch, config, [17], {17: 17}, cache)  # doctest: +SKIP
    >>> spans.centers[17].shape, cache.hits, cache.misses  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
import uuid
import warnings
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..errors import SraVizError
from .batch import Batch, PreparedExample, collate
from .config import DistillConfig
from .side_pass import run_side

CACHE_VERSION = 3  # bump when what is stored, or how, changes (2: float16 targets, 3: shuffled + zlib shards)
INDEX = "index.json"
LOCK = "index.lock"
SHARD_PREFIX, SHARD_SUFFIX = "shard-", ".stz"
SHARD_MAGIC = b"SRATC3\n\0"  # 8 bytes opening every shard file, then its raw length and the zlib stream
ZLIB_LEVEL = 6  # level 1 stores ~1 % more bytes; writes happen once per text, reads do not depend on it


class TeacherCacheWarning(UserWarning):
    """A cache file failed its checks (truncated, corrupt, unexpected content): it is recomputed."""


# ------------------------------------------------------------------ keys


_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's architecture, config and every parameter and buffer (name, dtype, shape,
    bytes); computed once per model object (about 1 s per GB of weights), the teacher being frozen.

    Example:
        >>> m = torch.nn.Linear(2, 2); weights_fingerprint(m) == weights_fingerprint(m)
        True
    """
    if model in _FINGERPRINTS:
        return _FINGERPRINTS[model]
    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        facts = {
            k: v for k, v in config.to_dict().items() if k not in {"_name_or_path", "transformers_version"}
        }
        digest.update(json.dumps(facts, sort_keys=True, default=str).encode())
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        digest.update(data.numpy().reshape(-1).view(np.uint8).data)
    _FINGERPRINTS[model] = digest.hexdigest()
    return _FINGERPRINTS[model]


@dataclass(frozen=True)
class TeacherContext:
    """Everything besides the text that determines the cached teacher side of a batch."""

    weights: str  # weights_fingerprint of the teacher
    mass_layers: tuple[tuple[int, int | None], ...]  # (pooled layer, block giving its masses), by layer
    mass_mode: str
    weighted_pooling: bool
    dtype: str
    device: str  # device kind: cpu / cuda / mps (kernels differ in the last bits)

    @property
    def layers(self) -> list[int]:
        return [layer for layer, _ in self.mass_layers]

    @property
    def mass_layer_list(self) -> list[int]:
        """Layers whose span masses come from attention (stored next to their CoMs)."""
        if self.mass_mode == "uniform":
            return []
        return [layer for layer, block in self.mass_layers if block is not None]

    def digest(self) -> str:
        fields = [CACHE_VERSION, self.weights, self.mass_layers, self.mass_mode, self.weighted_pooling]
        return hashlib.sha256(json.dumps([*fields, self.dtype, self.device]).encode()).hexdigest()

    def key(self, item: PreparedExample, digest: str | None = None) -> str:
        """The cache key of one prepared text under this context (``digest``: ``self.digest()``)."""
        h = hashlib.sha256((digest or self.digest()).encode())
        h.update(np.asarray(item.teacher_ids, dtype=np.int64).tobytes())
        h.update(b"|")
        h.update(np.asarray(item.teacher_span, dtype=np.int64).tobytes())
        return h.hexdigest()

    def expected(self, item: PreparedExample, dim: int) -> dict[str, tuple[int, ...]]:
        """Tensor name (without the key) -> shape that a record of ``item`` must hold."""
        names: dict[str, tuple[int, ...]] = {f"centers/{layer}": (item.n_spans, dim) for layer in self.layers}
        names.update({f"span_mass/{layer}": (item.n_spans,) for layer in self.mass_layer_list})
        return names


def teacher_context(
    teacher: Any, config: DistillConfig, mass_layers: dict[int, int | None]
) -> TeacherContext:
    """The context of ``teacher`` (a LoadedModel) pooled at ``mass_layers`` (layer -> mass block)."""
    model = teacher.model
    device = next(model.parameters()).device.type
    pairs = tuple(sorted(mass_layers.items()))
    return TeacherContext(
        weights_fingerprint(model),
        pairs,
        config.mass_mode,
        config.weighted_pooling,
        config.dtype,
        device,
    )


# ------------------------------------------------------------------ the folder


# "centers/<layer>" (N, D) float16/bfloat16, "span_mass/<layer>" (N,) float32
Record = dict[str, torch.Tensor]
TARGET_DTYPES = (torch.float16, torch.bfloat16)  # the CoMs' stored precisions, in order of preference
FLOAT16_MAX = torch.finfo(torch.float16).max  # 65504


def _fits_float16(centers: torch.Tensor) -> torch.Tensor:
    """Per text b, whether max_{k,d} |c_bkd| ≤ 65504 (float16's largest value): (B, N, D) -> (B, 1, 1) bool.
    The one rule that picks a text's target precision, for rounding and for storing."""
    return centers.abs().amax(dim=(1, 2), keepdim=True) <= FLOAT16_MAX


def round_targets(centers: torch.Tensor) -> torch.Tensor:
    """The teacher's span CoMs (B, N, D) at the precision the cache stores them, as float32 (B, N, D):

        c̃_b = float32(float16(c_b))    if max_{k,d} |c_bkd| ≤ 65504 (float16's largest value)
        c̃_b = float32(bfloat16(c_b))   otherwise (a text whose residual stream exceeds float16's range)

    per text b. Every teacher pass of :func:`teacher_spans` returns these, cached or not, so the
    losses see the same targets either way; float16 keeps 11 significant bits (relative rounding
    ≤ 2^-11), which moves the step-0 losses of the default pair by at most 3e-5 relative (METHOD.md).

        >>> round_targets(torch.tensor([[[1.0 + 2**-12, 7e4]], [[1.0 + 2**-12, 3.0]]])).tolist()
        [[[1.0, 70144.0]], [[1.0, 3.0]]]
    """
    fits = _fits_float16(centers)  # (B, 1, 1)
    return torch.where(fits, centers.half().float(), centers.bfloat16().float())


def _stored_dtype(rounded: torch.Tensor) -> torch.dtype:
    """float16 for a text's rounded CoMs that :func:`round_targets` put in float16's range, else bfloat16
    (its values are then exactly bfloat16 ones)."""
    return torch.float16 if bool(_fits_float16(rounded[None]).all()) else torch.bfloat16


@dataclass
class CacheInfo:
    """What ``sra-viz cache info`` prints."""

    folder: str
    entries: int
    shards: int
    bytes: int


def _empty_index() -> dict[str, Any]:
    return {"version": CACHE_VERSION, "shards": {}, "entries": {}}


def _shard_header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file (raises ValueError on a malformed one)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError("header runs past the end of the file")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def encode_shard(raw: bytes) -> bytes:
    """The bytes of a shard file holding the safetensors file ``raw`` (lossless):

        file = SHARD_MAGIC ‖ uint64_le(len(raw)) ‖ zlib(raw'[0::2] ‖ raw'[1::2])
        raw' = raw padded with one zero byte to an even length

    The byte-plane shuffle puts the low bytes of every 2-byte value first and the high bytes (sign,
    exponent, top of the mantissa: few distinct values) after them, where zlib finds the redundancy that
    interleaved float16 bytes hide. The tensors of a safetensors file start at 8-byte aligned offsets, so
    the planes split every float16 value (and every float32 into its two halves).

        >>> decode_shard(encode_shard(b"abcde")) == b"abcde"
        True
    """
    even = np.frombuffer(raw + b"\0" * (len(raw) % 2), dtype=np.uint8).reshape(-1, 2)  # (n, 2)
    planes = np.ascontiguousarray(even.T).tobytes()  # (2, n): low bytes, then high bytes
    return SHARD_MAGIC + struct.pack("<Q", len(raw)) + zlib.compress(planes, ZLIB_LEVEL)


def decode_shard(data: bytes) -> bytes:
    """The safetensors bytes of a shard file (inverse of :func:`encode_shard`); ValueError on a file that
    does not open with the magic, a zlib stream that is damaged (zlib checks its adler32) or that does not
    inflate to exactly the stated length (no more is ever inflated than that length)."""
    head = len(SHARD_MAGIC) + 8
    if len(data) < head or not data.startswith(SHARD_MAGIC):
        raise ValueError("it does not open as a teacher cache shard")
    (size,) = struct.unpack("<Q", data[len(SHARD_MAGIC) : head])
    padded = size + size % 2
    inflate = zlib.decompressobj()
    try:
        planes = inflate.decompress(data[head:], padded + 1)  # at most one byte past the stated length
    except zlib.error as exc:
        raise ValueError(f"its compressed payload is damaged ({exc})") from exc
    if len(planes) != padded or not inflate.eof or inflate.unused_data:
        raise ValueError(f"its compressed payload does not inflate to the stated {size} bytes")
    pairs = np.frombuffer(planes, dtype=np.uint8).reshape(2, -1)  # (2, n)
    return np.ascontiguousarray(pairs.T).tobytes()[:size]


class TeacherCache:
    """The cache folder: look texts up by key, add records, stay under ``limit_bytes`` (see module doc).

    ``hits`` / ``misses`` count the texts looked up by this object (read / recomputed).
    """

    def __init__(self, folder: str | os.PathLike, limit_bytes: int):
        if limit_bytes < 1:
            raise SraVizError(f"teacher cache limit {limit_bytes} bytes must be at least 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limit_bytes = int(limit_bytes)
        self.hits = self.misses = 0
        self._index: dict[str, Any] = _empty_index()
        self._index_stamp: tuple[int, int] | None = None

    # -------------------------------------------------------------- index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / LOCK, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.folder / INDEX).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _load_index(self) -> dict[str, Any]:
        """The index as on disk (re-read only when the file changed); a malformed one is warned about
        and treated as empty (its shards are swept at the next write)."""
        stamp = self._stamp()
        if stamp == self._index_stamp:
            return self._index
        index = _empty_index()
        if stamp is not None:
            try:
                data = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
                ok = (
                    isinstance(data, dict)
                    and data.get("version") == CACHE_VERSION
                    and isinstance(data.get("shards"), dict)
                    and isinstance(data.get("entries"), dict)
                )
                if not ok:
                    raise ValueError("not a teacher cache index of this version")
                index = data
            except (OSError, ValueError) as exc:
                warnings.warn(
                    f"teacher cache index {self.folder / INDEX} is unreadable ({exc}); starting it afresh "
                    "(the cached teacher outputs are recomputed)",
                    TeacherCacheWarning,
                    stacklevel=3,
                )
        self._index, self._index_stamp = index, stamp
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.folder / f".{INDEX}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(index), encoding="utf-8")
        os.replace(tmp, self.folder / INDEX)
        self._index, self._index_stamp = index, self._stamp()

    # -------------------------------------------------------------- reading

    def get(self, wanted: dict[str, dict[str, tuple[int, ...]]]) -> dict[str, Record]:
        """Records of the keys found and verified: ``wanted`` maps key -> {name: expected shape}.

        A shard that fails a check is warned about and dropped; its keys are absent from the result.
        """
        index = self._load_index()
        by_shard: dict[str, list[str]] = {}
        for key in wanted:
            shard = index["entries"].get(key)
            if shard is not None:
                by_shard.setdefault(shard, []).append(key)
        found: dict[str, Record] = {}
        for shard, keys in by_shard.items():
            try:
                tensors = self._read_shard(shard, index["shards"].get(shard))
            except FileNotFoundError:  # dropped by another process since the index was read
                continue
            except ValueError as exc:
                self._drop_bad(shard, str(exc))
                continue
            try:
                records = {key: _record_of(tensors, key, wanted[key]) for key in keys}
            except ValueError as exc:
                self._drop_bad(shard, str(exc))
                continue
            found.update(records)
            with contextlib.suppress(OSError):
                os.utime(self.folder / shard)  # least recently used: mtime is the last use
        return found

    def _read_shard(self, shard: str, meta: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        """Every tensor of a shard after checking its size and sha256 against the index (ValueError)."""
        if not isinstance(meta, dict):
            raise ValueError("it is missing from the index")
        data = (self.folder / shard).read_bytes()
        if len(data) != meta.get("bytes"):
            raise ValueError(f"it holds {len(data)} bytes, the index says {meta.get('bytes')} (truncated?)")
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise ValueError("its sha256 differs from the index (corrupted)")
        raw = decode_shard(data)
        try:
            _shard_header(raw)
            return load_safetensors(raw)
        except Exception as exc:  # safetensors raises its own error types on a malformed file
            raise ValueError(f"it is not a readable safetensors file ({exc})") from exc

    def _drop_bad(self, shard: str, reason: str) -> None:
        warnings.warn(
            f"teacher cache file {self.folder / shard} failed its check: {reason}; it is dropped and its "
            "teacher outputs recomputed",
            TeacherCacheWarning,
            stacklevel=4,
        )
        with self._locked():
            index = self._load_index()
            self._remove_shards(index, [shard])
            self._write_index(index)

    # -------------------------------------------------------------- writing

    def put(self, records: dict[str, Record]) -> None:
        """Store ``records`` (key -> record) as one shard, then keep the folder under its limit."""
        if not records:
            return
        tensors = {
            f"{key}/{name}": t.detach().cpu().contiguous()
            for key, rec in records.items()
            for name, t in rec.items()
        }
        data = encode_shard(save_safetensors(tensors, metadata={"version": str(CACHE_VERSION)}))
        shard = f"{SHARD_PREFIX}{uuid.uuid4().hex}{SHARD_SUFFIX}"
        with self._locked():
            index = self._load_index()
            tmp = self.folder / f".{shard}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.folder / shard)
            stale = [index["entries"][key] for key in records if key in index["entries"]]
            index["shards"][shard] = {
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "keys": sorted(records),
            }
            for key in records:
                index["entries"][key] = shard
            self._forget_keys_moved(index, stale)
            self._sweep_orphans(index)
            self._evict(index, keep=shard)
            self._write_index(index)

    def _forget_keys_moved(self, index: dict[str, Any], shards: list[str]) -> None:
        """Drop shards none of whose keys point at them any more (their texts were written again)."""
        for shard in set(shards):
            meta = index["shards"].get(shard)
            if meta is not None and not any(index["entries"].get(k) == shard for k in meta["keys"]):
                self._remove_shards(index, [shard])

    def _remove_shards(self, index: dict[str, Any], shards: list[str]) -> None:
        for shard in shards:
            meta = index["shards"].pop(shard, None) or {"keys": []}
            for key in meta["keys"]:
                if index["entries"].get(key) == shard:
                    del index["entries"][key]
            with contextlib.suppress(FileNotFoundError):
                (self.folder / shard).unlink()

    def _sweep_orphans(self, index: dict[str, Any]) -> None:
        """Shard files the index does not name (left by an index that was lost, or by an older version of
        the cache, whatever their suffix) are removed."""
        for path in self.folder.glob(f"{SHARD_PREFIX}*"):
            if path.name not in index["shards"]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _evict(self, index: dict[str, Any], keep: str) -> None:
        """Drop least recently used shards (oldest mtime first) until the total is within the limit;
        ``keep`` (the shard just written) goes last."""
        total = sum(int(meta["bytes"]) for meta in index["shards"].values())
        if total <= self.limit_bytes:
            return

        def last_use(shard: str) -> tuple[bool, int]:
            try:
                return shard == keep, (self.folder / shard).stat().st_mtime_ns
            except FileNotFoundError:
                return shard == keep, -1

        for shard in sorted(index["shards"], key=last_use):
            if total <= self.limit_bytes:
                break
            total -= int(index["shards"][shard]["bytes"])
            self._remove_shards(index, [shard])

    # -------------------------------------------------------------- the whole folder

    def info(self) -> CacheInfo:
        index = self._load_index()
        size = sum(int(meta["bytes"]) for meta in index["shards"].values())
        return CacheInfo(str(self.folder), len(index["entries"]), len(index["shards"]), size)

    def clear(self) -> CacheInfo:
        """Remove every shard and the index; returns what was there."""
        with self._locked():
            before = self.info()
            index = self._load_index()
            self._remove_shards(index, list(index["shards"]))
            self._sweep_orphans(index)
            self._write_index(_empty_index())
        return before


def _record_of(tensors: dict[str, torch.Tensor], key: str, expected: dict[str, tuple[int, ...]]) -> Record:
    """The record of ``key`` in a shard's tensors, each checked for presence, shape and dtype (CoMs
    float16 or bfloat16, span masses float32)."""
    record = {}
    for name, shape in expected.items():
        tensor = tensors.get(f"{key}/{name}")
        if tensor is None:
            raise ValueError(f"it lacks {name} of key {key[:12]}")
        dtypes = TARGET_DTYPES if name.startswith("centers/") else (torch.float32,)
        if tuple(tensor.shape) != shape or tensor.dtype not in dtypes:
            allowed = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
            found = f"{tuple(tensor.shape)} {tensor.dtype}"
            raise ValueError(f"{name} of key {key[:12]} is {found}, expected {shape} {allowed}")
        record[name] = tensor
    return record


def open_teacher_cache(config: DistillConfig) -> TeacherCache | None:
    """The cache a run with ``config`` uses (``teacher_cache="off"``: None), in
    ``sra_viz.paths.teacher_cache_dir()`` with the run's limit ``teacher_cache_mb``."""
    if config.teacher_cache != "on":
        return None
    from .. import paths

    return TeacherCache(paths.teacher_cache_dir(), config.teacher_cache_mb << 20)


# ------------------------------------------------------------------ the hook the SRA terms call


@dataclass
class TeacherSpans:
    """The teacher side of one batch as the SRA terms read it."""

    centers: dict[int, torch.Tensor]  # layer -> (B, N, D_T) float32 of round_targets; 0 past a text's spans
    span_mass: dict[int, torch.Tensor]  # layer -> (B, N) attention span masses M_k (absent: uniform)


def _compute(
    teacher: Any, batch: Batch, config: DistillConfig, mass_layers: dict[int, int | None]
) -> TeacherSpans:
    with torch.no_grad():
        out = run_side(
            teacher,
            batch,
            "teacher",
            sorted(mass_layers),
            mass_layers,
            config.mass_mode,
            config.weighted_pooling,
            grad=False,
            dtype=config.dtype,
        )
    return TeacherSpans({layer: round_targets(c) for layer, c in out.centers.items()}, out.span_mass)


def teacher_spans(
    teacher: Any,
    batch: Batch,
    config: DistillConfig,
    mass_layers: dict[int, int | None],
    cache: TeacherCache | None = None,
) -> TeacherSpans:
    """The teacher's CoMs of every layer of ``mass_layers`` (layer -> block giving its masses) and the
    span masses of those pooled with attention, for ``batch``: read from ``cache`` where it holds them,
    the rest computed in one no-grad pass over the texts it lacks (and stored). The CoMs are
    :func:`round_targets`' in every case.

    Equal to the uncached pass wherever the cache was filled by the same batches; a text computed in
    another batch differs by padding in the float rounding only (about 1e-7 relative).
    """
    if cache is None:
        return _compute(teacher, batch, config, mass_layers)
    context = teacher_context(teacher, config, mass_layers)
    digest = context.digest()
    dim = _hidden_size(teacher.model)
    keys = [context.key(item, digest) for item in batch.items]
    wanted = {key: context.expected(item, dim) for key, item in zip(keys, batch.items, strict=True)}
    found = cache.get(wanted)
    missing = [b for b, key in enumerate(keys) if key not in found]
    cache.hits += len(keys) - len(missing)
    cache.misses += len(missing)
    if len(missing) == len(keys):  # nothing cached: the very pass of the uncached path
        spans = _compute(teacher, batch, config, mass_layers)
        cache.put({keys[b]: _record(spans, b, batch.items[b]) for b in range(len(keys))})
        return spans
    records = {key: found[key] for key in found}
    if missing:
        items = [batch.items[b] for b in missing]
        side = teacher.tokenizer.padding_side or "right"
        sub = collate(items, side, "right")  # the student's padding does not enter the teacher's pass
        computed = _compute(teacher, sub, config, mass_layers)
        new = {keys[b]: _record(computed, i, batch.items[b]) for i, b in enumerate(missing)}
        cache.put(new)
        records.update(new)
    return _assemble(batch, keys, records, context, dim, next(teacher.model.parameters()).device)


def _record(spans: TeacherSpans, row: int, item: PreparedExample) -> Record:
    """Row ``row`` of a computed batch, cut to the text's own spans, on the CPU (the rounded CoMs in the
    dtype that holds them exactly)."""
    n = item.n_spans
    record = {}
    for layer, c in spans.centers.items():
        rounded = c[row, :n]  # (n, D) float32 values of round_targets
        record[f"centers/{layer}"] = rounded.to(_stored_dtype(rounded)).cpu()
    record.update(
        {f"span_mass/{layer}": m[row, :n].float().cpu().clone() for layer, m in spans.span_mass.items()}
    )
    return record


def _assemble(
    batch: Batch,
    keys: list[str],
    records: dict[str, Record],
    context: TeacherContext,
    dim: int,
    device: torch.device,
) -> TeacherSpans:
    """Per-text records padded to the batch: (B, N, D) CoMs and (B, N) masses, zero past each text."""
    n_texts, n_spans = len(keys), batch.n_spans
    centers = {layer: torch.zeros((n_texts, n_spans, dim)) for layer in context.layers}
    masses = {layer: torch.zeros((n_texts, n_spans)) for layer in context.mass_layer_list}
    for b, (key, item) in enumerate(zip(keys, batch.items, strict=True)):
        record, n = records[key], item.n_spans
        for layer in context.layers:
            centers[layer][b, :n] = record[f"centers/{layer}"]
        for layer in context.mass_layer_list:
            masses[layer][b, :n] = record[f"span_mass/{layer}"]
    return TeacherSpans(
        {layer: c.to(device) for layer, c in centers.items()},
        {layer: m.to(device) for layer, m in masses.items()},
    )


def _hidden_size(model: Any) -> int:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(cfg, "hidden_size", 0) or cfg.n_embd)
