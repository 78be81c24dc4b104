"""LoRA students (--peft lora): only the adapters train, and export merges them into a plain model."""

from __future__ import annotations

import pytest
import torch

from sra_viz.distill import DistillSession
from sra_viz.errors import SraVizError
from tests._configs import small_config

# LoRA adapters (rank 2) on the whole student's q_proj and v_proj, a large lr so that 2 steps move them
LORA_RUN = dict(
    student_variant="full",
    lr=1e-2,
    probe_size=2,
    heldout_size=1,
    eval_size=0,
    log_every=10,
    snapshot_every=10,
    peft="lora",
    lora_rank=2,
    lora_targets="q_proj,v_proj",
)


def test_lora_trains_only_the_adapters_and_export_merges_them(tiny_pair, tiny_pair_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    from sra_viz.distill.export import export_run

    teacher, student = (str(d) for d in tiny_pair_dirs)  # export rebuilds the student from its folder
    session = DistillSession(
        small_config(tmp_path / "run", LORA_RUN, teacher=teacher, student=student), pair=tiny_pair
    )
    blocks = len(session.student.model.model.layers)
    assert len(session.student.trainable) == blocks * 2 * 2  # q_proj and v_proj, lora_A and lora_B each
    assert all(".lora_A." in n or ".lora_B." in n for n in session.student.trainable)
    assert session.run() == "finished"
    base = dict(tiny_pair.student.model.named_parameters())
    trained = dict(session.student.model.named_parameters())
    for name, param in trained.items():
        if "lora_" not in name:  # every base weight as it was (peft names them ...base_layer.weight)
            torch.testing.assert_close(param, base[name.replace(".base_layer", "")], rtol=0, atol=0)
    assert any(
        float(p.detach().abs().sum()) > 0 for n, p in trained.items() if ".lora_B." in n
    )  # B starts at 0

    folder = export_run(session.run_dir.path, tmp_path / "exported")
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert not any("lora" in name for name, _ in plain.named_parameters())
    ids = torch.tensor([[2, 651, 4320, 8426, 25341]])
    session.student.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, session.student.model(ids).logits, rtol=1e-4, atol=1e-4)
        moved = (plain(ids).logits - tiny_pair.student.model(ids).logits).abs().max()
    assert float(moved) > 0  # the merged adapters changed the model


def test_lora_bad_input_is_one_clear_line(tiny_pair, tmp_path):
    with pytest.raises(SraVizError) as err:
        DistillSession(small_config(tmp_path / "run", LORA_RUN, lora_targets="q_proj,qkv"), pair=tiny_pair)
    message = str(err.value)
    assert message.startswith("lora_targets qkv match no linear layer of the student; its linear layers are")
    assert "q_proj" in message and "\n" not in message
    assert not (tmp_path / "run").exists()
    with pytest.raises(SraVizError, match="use student_variant full or truncated with it, not last_k"):
        small_config(tmp_path / "run", LORA_RUN, student_variant="last_k")
    with pytest.raises(SraVizError, match=r"peft='qlora' is unknown; expected one of \('none', 'lora'\)"):
        small_config(tmp_path / "run", LORA_RUN, peft="qlora")
