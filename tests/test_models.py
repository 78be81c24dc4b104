"""Foundation: fetching, converting and loading the real default pair; every bad spec gives one clear
error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sra_viz import fetch, paths
from sra_viz.errors import SraVizError
from sra_viz.models import load_model, load_tokenizer, require_attentions

pytestmark = pytest.mark.slow


def _forward(lm, text="The capital of France is Paris. It is a large city."):
    enc = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return enc.input_ids, lm.model(**enc, output_attentions=True, output_hidden_states=True)


@pytest.mark.parametrize("side", ["teacher", "student"])
def test_default_pair_forward_has_causal_attentions_and_advertised_sizes(default_pair, side):
    lm = getattr(default_pair, side)
    ids, out = _forward(lm)
    info = lm.info
    assert len(out.attentions) == info.layers > 0
    assert len(out.hidden_states) == info.layers + 1
    seq = ids.shape[1]
    for att in out.attentions:
        assert att.shape == (1, info.heads, seq, seq)
        torch.testing.assert_close(att.sum(-1), torch.ones(1, info.heads, seq), atol=1e-4, rtol=0)
        upper = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
        assert att[..., upper].abs().max() == 0  # causal: no attention to later tokens
    for hidden in out.hidden_states:
        assert hidden.shape == (1, seq, info.hidden_size)
    assert out.logits.shape[-1] == info.vocab_size
    assert info.attn_implementation == "eager"
    assert info.params == sum(p.numel() for p in lm.model.parameters())


def test_default_pair_facts(default_pair):
    t, s = default_pair.teacher.info, default_pair.student.info
    assert (t.layers, t.hidden_size, t.heads, t.kv_heads, t.vocab_size) == (18, 640, 4, 1, 262144)
    assert (s.layers, s.hidden_size, s.heads, s.kv_heads, s.vocab_size) == (30, 576, 9, 3, 49152)
    assert t.adds_bos and not s.adds_bos
    assert (t.padding_side, s.padding_side) == ("left", "right")
    assert "byte fallback" in t.tokenizer_kind and s.tokenizer_kind == "byte-level BPE"


def test_student_is_a_real_pretrained_model(default_pair):
    lm = default_pair.student
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    enc = lm.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = lm.tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_fetch_into_fresh_cache_is_atomic_and_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("SRA_VIZ_HOME", str(tmp_path))
    assert paths.home() == tmp_path

    # A conversion that dies half way leaves nothing that looks complete.
    def boom(*args, **kwargs):
        (args[1] / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "convert_gguf", boom)
    with pytest.raises(KeyboardInterrupt):
        fetch.ensure_default_model("smollm2-135m")
    assert not (paths.models_dir() / "smollm2-135m").exists()
    assert list(paths.models_dir().iterdir()) == []
    assert fetch.is_complete(paths.gguf_dir() / "smollm2-135m")  # the download itself was published
    monkeypatch.undo()
    monkeypatch.setenv("SRA_VIZ_HOME", str(tmp_path))

    # A leftover folder without the marker (an older killed run) is rebuilt, not trusted.
    stale = paths.models_dir() / "smollm2-135m"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    folder = fetch.ensure_default_model("smollm2-135m")
    assert fetch.is_complete(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"
    mtime = (folder / fetch.MARKER).stat().st_mtime
    assert "added_tokens_decoder" in json.loads((folder / "tokenizer_config.json").read_text())
    assert fetch.ensure_default_model("smollm2-135m") == folder  # idempotent: nothing redone
    assert (folder / fetch.MARKER).stat().st_mtime == mtime

    lm = load_model(folder, device="cpu")
    ids, out = _forward(lm)
    assert out.attentions[0].shape[-1] == ids.shape[1]

    # The GGUF itself loads too (slow path: vocabulary parsing) and gives the same logits.
    gguf = paths.gguf_dir() / "smollm2-135m" / fetch.SMOLLM2.gguf_name
    assert fetch.sha256_file(gguf) == fetch.SMOLLM2.sha256
    from_gguf = load_model(gguf, device="cpu")
    assert from_gguf.info.source == "gguf"
    _, out_gguf = _forward(from_gguf)
    torch.testing.assert_close(out_gguf.logits, out.logits, atol=1e-4, rtol=1e-4)


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SraVizError, match="no-such-org/no-such-model.*local cache"):
        load_model("no-such-org/no-such-model", device="cpu")


def test_missing_path():
    with pytest.raises(SraVizError, match="no such file or folder: './does/not/exist'"):
        load_model("./does/not/exist")
    with pytest.raises(SraVizError, match=r"no such file or folder: '/nope/model.gguf'"):
        load_model("/nope/model.gguf")


def test_folder_that_is_not_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(SraVizError, match="'vit' model, which is not a causal language model"):
        load_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SraVizError, match="holds no config.json"):
        load_model(empty)


def test_corrupted_and_truncated_gguf(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(SraVizError, match="is not a GGUF file"):
        load_model(junk)
    real = fetch.fetch_gguf(fetch.SMOLLM2)
    cut = tmp_path / "cut.gguf"
    with open(real, "rb") as src:
        cut.write_bytes(src.read(1 << 20))
    with pytest.raises(SraVizError, match="corrupted or truncated GGUF"):
        load_model(cut, device="cpu")


def test_model_without_attentions_is_refused():
    from transformers import AutoModelForCausalLM

    folder = fetch.ensure_default_model("smollm2-135m")
    sdpa = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    with pytest.raises(SraVizError, match="returns no attentions.*attn_implementation='eager'"):
        require_attentions(sdpa, "smollm2 (sdpa)")


def test_slow_tokenizer_is_refused(tmp_path, student_tokenizer):
    assert student_tokenizer.is_fast
    folder = tmp_path / "copy"
    shutil.copytree(fetch.ensure_default_model("smollm2-135m"), folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(SraVizError):
        load_tokenizer(folder)


def test_unknown_dtype_and_device():
    with pytest.raises(SraVizError, match="unknown dtype 'float7'"):
        load_model("smollm2-135m", device="cpu", dtype="float7")
    if not torch.cuda.is_available():
        with pytest.raises(SraVizError, match="CUDA is not available"):
            load_model("smollm2-135m", device="cuda")


def test_unknown_hub_id_without_network_fails_fast_and_clearly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(SraVizError, match="could not load Hugging Face model 'someorg/somemodel'"):
        load_model("someorg/somemodel", device="cpu")


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m"])
def test_added_tokens_in_the_config_load_the_very_same_tokenizer(tmp_path, name):
    """A converted folder lists its added tokens in tokenizer_config.json (transformers then skips a
    second Python parse of tokenizer.json); the tokenizer loaded is the one the legacy path gives."""
    from transformers import AutoTokenizer

    from sra_viz.tokenizer_files import record_added_tokens

    folder = fetch.ensure_default_model(name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert len(config["added_tokens_decoder"]) >= 1
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for file in folder.iterdir():  # the folder as converted, less the weights
        if file.suffix != ".safetensors":
            shutil.copy(file, legacy / file.name)
    del config["added_tokens_decoder"]
    (legacy / "tokenizer_config.json").write_text(json.dumps(config))
    old = AutoTokenizer.from_pretrained(str(legacy))
    new = AutoTokenizer.from_pretrained(str(folder))
    assert type(new) is type(old)
    assert new.backend_tokenizer.to_str() == old.backend_tokenizer.to_str()
    assert new.added_tokens_decoder == old.added_tokens_decoder
    assert new.padding_side == old.padding_side and new.model_max_length == old.model_max_length
    kwargs = {k: repr(v) for k, v in new.init_kwargs.items() if k != "name_or_path"}
    assert kwargs == {k: repr(v) for k, v in old.init_kwargs.items() if k != "name_or_path"}
    text = "<bos>Hello 東京 <start_of_turn> ▁x 🇫🇷\n\tdef f(): return 1"
    assert new(text).input_ids == old(text).input_ids
    # Recording is idempotent and upgrades a folder saved without them in place.
    assert record_added_tokens(legacy) is True
    assert record_added_tokens(legacy) is False
    upgraded = json.loads((legacy / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert upgraded == {str(i): t.__getstate__() for i, t in old.added_tokens_decoder.items()}


def test_a_gguf_is_parsed_once_inside_gguf_read_once(tmp_path):
    import gguf
    import numpy as np

    from sra_viz.gguf_reading import gguf_read_once

    path = tmp_path / "tiny.gguf"

    def write(value: int) -> None:
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_uint32("test.value", value)
        writer.add_tensor("blk.0.attn_q.weight", np.arange(4, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    write(7)
    own_reader, own_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with gguf_read_once():
        first = gguf.GGUFReader(path)
        assert first.fields["test.value"].contents() == 7
        with gguf_read_once():  # nested: the same memo
            assert gguf.GGUFReader(str(path)) is first
        assert gguf.GGUFReader(path) is first
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 2).get_name("model.layers.1.self_attn.q_proj") == "blk.1.attn_q"
        del first
        path.unlink()
        write(8)  # a file replaced meanwhile is read again
        assert gguf.GGUFReader(path).fields["test.value"].contents() == 8
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (own_reader, own_map)
    assert gguf.GGUFReader(path) is not gguf.GGUFReader(path)
