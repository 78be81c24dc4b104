"""The teacher cache (sra_viz.distill.teacher_cache): round trip, keys, corruption, LRU bound, and the
batch hook on the tiny pair (cold, warm and corrupted reads give the uncached pass's numbers)."""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from sra_viz.distill.batch import collate, prepare_example
from sra_viz.distill.config import DistillConfig
from sra_viz.distill.teacher_cache import (
    INDEX,
    SHARD_MAGIC,
    TeacherCache,
    TeacherCacheWarning,
    TeacherContext,
    decode_shard,
    encode_shard,
    round_targets,
    teacher_context,
    teacher_spans,
    weights_fingerprint,
)


def _record(seed: int, n: int = 3, dim: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"centers/1": torch.randn(n, dim, generator=g).half(), "span_mass/1": torch.rand(n, generator=g)}


def _wanted(*keys: str, n: int = 3, dim: int = 4) -> dict[str, dict[str, tuple[int, ...]]]:
    return {key: {"centers/1": (n, dim), "span_mass/1": (n,)} for key in keys}


def _shards(cache: TeacherCache) -> list:
    return sorted(cache.folder.glob("shard-*.stz"))


# ------------------------------------------------------------------ the folder (no model)


def test_records_round_trip_bit_exact_and_unknown_keys_miss(tmp_path):
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    a, b = _record(0), _record(1)
    cache.put({"a": a, "b": b})
    again = TeacherCache(tmp_path, limit_bytes=1 << 20)  # a new process's view: read from disk
    found = again.get(_wanted("a", "b", "c"))
    assert sorted(found) == ["a", "b"]
    for key, rec in (("a", a), ("b", b)):
        for name, tensor in rec.items():
            assert torch.equal(found[key][name], tensor), (key, name)
    info = again.info()
    assert (info.entries, info.shards) == (2, 1) and info.bytes == _shards(again)[0].stat().st_size


def test_a_record_of_another_shape_is_not_read_as_data(tmp_path):
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    cache.put({"a": _record(0, n=3)})
    with pytest.warns(TeacherCacheWarning, match="expected"):
        assert cache.get(_wanted("a", n=5)) == {}
    assert cache.info().entries == 0 and _shards(cache) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_shard_is_detected_warned_about_and_dropped(tmp_path, damage):
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    cache.put({"a": _record(0)})
    cache.put({"b": _record(1)})
    shard = tmp_path / json.loads((tmp_path / INDEX).read_text())["entries"]["a"]
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "flip":
        data[-3] ^= 0x40  # one bit of a float: still a well-formed safetensors file
    else:
        data = bytearray(b"\xff" * len(data))
    shard.write_bytes(bytes(data))
    with pytest.warns(TeacherCacheWarning, match="failed its check"):
        found = TeacherCache(tmp_path, limit_bytes=1 << 20).get(_wanted("a", "b"))
    assert sorted(found) == ["b"] and torch.equal(found["b"]["centers/1"], _record(1)["centers/1"])
    assert not shard.exists() and cache.info().entries == 1


def test_a_damaged_compressed_payload_is_detected_even_when_the_index_agrees(tmp_path):
    """Damage inside the zlib stream, with the index's size and sha256 rewritten to match the damaged
    file: zlib's own check (or the inflated length) catches it, the shard is dropped, never read."""
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    cache.put({"a": _record(0, n=40, dim=16)})
    index = json.loads((tmp_path / INDEX).read_text())
    name = index["entries"]["a"]
    data = bytearray((tmp_path / name).read_bytes())
    assert data.startswith(SHARD_MAGIC)
    data[len(data) // 2] ^= 0x10  # one bit in the middle of the deflate stream
    (tmp_path / name).write_bytes(bytes(data))
    index["shards"][name].update(bytes=len(data), sha256=hashlib.sha256(bytes(data)).hexdigest())
    (tmp_path / INDEX).write_text(json.dumps(index))
    with pytest.warns(TeacherCacheWarning, match="compressed payload"):
        assert TeacherCache(tmp_path, limit_bytes=1 << 20).get(_wanted("a", n=40, dim=16)) == {}
    assert cache.info().entries == 0 and _shards(cache) == []


def test_shards_of_an_older_cache_version_are_swept_at_the_first_write(tmp_path):
    old = tmp_path / "shard-0123.safetensors"  # CACHE_VERSION 2 stored plain safetensors files
    old.write_bytes(b"\0" * 64)
    (tmp_path / INDEX).write_text(json.dumps({"version": 2, "shards": {}, "entries": {}}))
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    with pytest.warns(TeacherCacheWarning, match="unreadable"):
        cache.put({"a": _record(0)})
    assert not old.exists() and len(_shards(cache)) == 1 and sorted(cache.get(_wanted("a"))) == ["a"]


def test_shard_encoding_is_lossless_and_smaller_on_float16_values():
    values = torch.randn(40, 640, generator=torch.Generator().manual_seed(0)).half()  # CoM-like spread
    raw = values.numpy().tobytes()
    for data in (raw, raw + b"x", b"", b"\x01"):
        assert decode_shard(encode_shard(data)) == data
    assert len(encode_shard(raw)) < 0.9 * len(raw)
    with pytest.raises(ValueError, match="stated"):
        decode_shard(encode_shard(raw) + b"junk")  # bytes past the stream's end
    with pytest.raises(ValueError, match="does not open"):
        decode_shard(raw)


def test_a_record_of_float32_centers_is_not_read_as_data(tmp_path):
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    record = _record(0)
    cache.put({"a": {**record, "centers/1": record["centers/1"].float()}})
    with pytest.warns(TeacherCacheWarning, match="float16 or bfloat16"):
        assert cache.get(_wanted("a")) == {}


def test_targets_are_float16_per_text_and_bfloat16_for_a_text_beyond_its_range():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 4, 8, generator=g) * torch.tensor([1.0, 1e3, 1e5])[:, None, None]  # (B, N, D)
    rounded = round_targets(centers)
    assert rounded.dtype == torch.float32 and torch.isfinite(rounded).all()
    for b, dtype in ((0, torch.float16), (1, torch.float16), (2, torch.bfloat16)):
        assert torch.equal(rounded[b], centers[b].to(dtype).float()), b
    assert torch.equal(round_targets(rounded), rounded)  # rounding twice changes nothing
    rel = ((rounded[:2] - centers[:2]).abs() / centers[:2].abs()).max()
    assert 0 < rel <= 2**-11  # float16: 11 significant bits


def test_a_malformed_index_is_warned_about_and_its_shards_swept_at_the_next_write(tmp_path):
    cache = TeacherCache(tmp_path, limit_bytes=1 << 20)
    cache.put({"a": _record(0)})
    (tmp_path / INDEX).write_text("{not json")
    fresh = TeacherCache(tmp_path, limit_bytes=1 << 20)
    with pytest.warns(TeacherCacheWarning, match="unreadable"):
        assert fresh.get(_wanted("a")) == {}
    fresh.put({"b": _record(1)})
    assert len(_shards(fresh)) == 1 and sorted(fresh.get(_wanted("a", "b"))) == ["b"]


def test_the_folder_stays_under_its_limit_dropping_the_least_recently_used(tmp_path):
    probe = TeacherCache(tmp_path / "probe", limit_bytes=1 << 20)
    probe.put({"x": _record(0)})
    one = probe.info().bytes  # every record below has the same size
    cache = TeacherCache(tmp_path / "lru", limit_bytes=2 * one + one // 2)  # room for two shards
    cache.put({"a": _record(0)})
    time.sleep(0.01)
    cache.put({"b": _record(1)})
    time.sleep(0.01)
    assert sorted(cache.get(_wanted("a"))) == ["a"]  # a is now used more recently than b
    time.sleep(0.01)
    cache.put({"c": _record(2)})
    assert sorted(cache.get(_wanted("a", "b", "c"))) == ["a", "c"]
    assert cache.info().bytes <= cache.limit_bytes and len(_shards(cache)) == 2
    cleared = cache.clear()
    assert cleared.entries == 2 and cache.info().entries == 0 and _shards(cache) == []


def test_keys_change_with_everything_that_determines_the_teacher_side():
    base = TeacherContext("w", ((1, 1),), "last_token", True, "float32", "cpu")
    variants = [
        TeacherContext("w2", ((1, 1),), "last_token", True, "float32", "cpu"),
        TeacherContext("w", ((1, None),), "last_token", True, "float32", "cpu"),
        TeacherContext("w", ((0, 0), (1, 1)), "last_token", True, "float32", "cpu"),
        TeacherContext("w", ((1, 1),), "received", True, "float32", "cpu"),
        TeacherContext("w", ((1, 1),), "last_token", False, "float32", "cpu"),
        TeacherContext("w", ((1, 1),), "last_token", True, "bfloat16", "cpu"),
        TeacherContext("w", ((1, 1),), "last_token", True, "float32", "cuda"),
    ]
    digests = {base.digest(), *(v.digest() for v in variants)}
    assert len(digests) == len(variants) + 1

    class Item:
        teacher_ids = [2, 5, 7]
        teacher_span = np.array([-1, 0, 1])

    other_ids, other_span = Item(), Item()
    other_ids.teacher_ids = [2, 5, 8]
    other_span.teacher_span = np.array([-1, 0, 0])
    keys = {base.key(Item()), base.key(other_ids), base.key(other_span), variants[0].key(Item())}
    assert len(keys) == 4 and base.key(Item()) == base.key(Item())

    model = torch.nn.Linear(3, 2)
    same, other = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        other.weight[0, 0] += 1e-6  # before its first fingerprint (it is computed once per model)
    assert weights_fingerprint(same) == weights_fingerprint(model) != weights_fingerprint(other)


# ------------------------------------------------------------------ the batch hook (tiny pair)


def _tiny_batch(pair, texts=3):
    from sra_viz.data import load_bundled_corpus

    items = [
        prepare_example(e, pair.teacher.tokenizer, pair.student.tokenizer, 32)
        for e in load_bundled_corpus()[:texts]
    ]
    return collate(
        items, pair.teacher.tokenizer.padding_side or "right", pair.student.tokenizer.padding_side or "right"
    )


def _same(a, b) -> None:
    assert sorted(a.centers) == sorted(b.centers) and sorted(a.span_mass) == sorted(b.span_mass)
    for layer in a.centers:
        assert torch.equal(a.centers[layer], b.centers[layer]), layer
    for layer in a.span_mass:
        assert torch.equal(a.span_mass[layer], b.span_mass[layer]), layer


def test_cold_warm_and_damaged_reads_give_the_uncached_pass(tiny_pair, tmp_path):
    config = DistillConfig()
    batch = _tiny_batch(tiny_pair)
    masses = {0: 0, 1: 1}
    bare = teacher_spans(tiny_pair.teacher, batch, config, masses, None)
    assert bare.centers[1].shape[:2] == batch.span_valid.shape and sorted(bare.span_mass) == [0, 1]
    cache = TeacherCache(tmp_path, limit_bytes=1 << 30)
    _same(teacher_spans(tiny_pair.teacher, batch, config, masses, cache), bare)  # cold: computed, stored
    assert (cache.hits, cache.misses) == (0, 3) and cache.info().entries == 3
    warm = TeacherCache(tmp_path, limit_bytes=1 << 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TeacherCacheWarning)
        _same(teacher_spans(tiny_pair.teacher, batch, config, masses, warm), bare)
    assert (warm.hits, warm.misses) == (3, 0)
    shard = _shards(warm)[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.warns(TeacherCacheWarning):
        _same(teacher_spans(tiny_pair.teacher, batch, config, masses, warm), bare)
    assert warm.misses == 3 and warm.info().entries == 3  # recomputed and stored again
    # a text cached alone (another batch: other padding) matches within float rounding
    context = teacher_context(tiny_pair.teacher, config, masses)
    assert len({context.key(item) for item in batch.items}) == 3
    part = TeacherCache(tmp_path / "part", limit_bytes=1 << 30)
    teacher_spans(tiny_pair.teacher, collate(batch.items[1:2], "left", "right"), config, masses, part)
    mixed = teacher_spans(tiny_pair.teacher, batch, config, masses, part)
    assert (part.hits, part.misses) == (1, 3)  # 1 alone, then 2 of 3 missing
    for layer in bare.centers:  # padding moves the float32 values by ~1e-7: at most one float16 step apart
        torch.testing.assert_close(mixed.centers[layer], bare.centers[layer], rtol=2**-10, atol=1e-6)


def test_every_teacher_pass_gives_the_stored_float16_targets(tiny_pair, tmp_path):
    """Computed without a cache, computed and stored, read back: the same float16-representable CoMs."""
    config = DistillConfig()
    batch = _tiny_batch(tiny_pair)
    masses = {1: 1}
    bare = teacher_spans(tiny_pair.teacher, batch, config, masses, None)
    c = bare.centers[1]  # (B, N, D)
    assert torch.equal(c, c.half().float())  # the tiny pair's values are within float16's range
    cache = TeacherCache(tmp_path, limit_bytes=1 << 30)
    teacher_spans(tiny_pair.teacher, batch, config, masses, cache)
    shard = load_safetensors(decode_shard(_shards(cache)[0].read_bytes()))
    centers = [t for name, t in shard.items() if name.endswith("/centers/1")]
    assert len(centers) == 3 and all(t.dtype == torch.float16 for t in centers)
    masses_stored = [t for name, t in shard.items() if name.endswith("/span_mass/1")]
    assert all(t.dtype == torch.float32 for t in masses_stored)
