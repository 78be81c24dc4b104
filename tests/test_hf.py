"""SRA in one's own training code: ``SRALoss`` (the engine's objective as a module) and ``SRATrainer``."""

from __future__ import annotations

import pytest
import torch

from sra_viz.distill import DistillConfig, DistillSession, SRALoss
from sra_viz.errors import SraVizError
from tests._configs import small_config

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "A prime number has exactly two divisors: one and itself.",
]

# the terms compared need no run: a 2-block student, few texts, no held-out evaluation
HF_RUN = dict(probe_size=2, heldout_size=1, eval_size=0, seed=3)


def test_sra_loss_on_a_bare_hf_student_equals_the_session_terms(tiny_pair, tmp_path):
    cfg = small_config(tmp_path / "run", HF_RUN)
    session = DistillSession(cfg, pair=tiny_pair)
    student = session.student.model  # a bare HF model: the tokenizer is passed separately
    sra = SRALoss(tiny_pair.teacher, student, cfg, student_tokenizer=tiny_pair.student.tokenizer)
    assert sra.projectors is not None and session.projectors is not None
    sra.projectors.load_state_dict(session.projectors.state_dict())
    batch = sra.collate([sra.prepare(t) for t in TEXTS])
    expected = session.loss_terms(batch)
    got = sra(TEXTS)  # from plain texts: prepared and collated by the module
    assert sorted(expected) == ["ce", "geo", "kd", "span"]
    assert sorted(got) == ["ce", "geo", "kd", "loss", "span"]
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value)
    a = cfg.alpha
    by_hand = a * expected["ce"] + (1 - a) * (
        expected["span"] + cfg.lambda_geo * expected["geo"] + expected["kd"]
    )
    torch.testing.assert_close(got["loss"], by_hand)


def test_sra_loss_gradients_reach_the_student_and_projectors_not_the_teacher(tiny_pair, tmp_path):
    cfg = small_config(None, HF_RUN)
    from sra_viz.distill.student import make_student

    student = make_student(tiny_pair.student.model, "truncated", 2).model
    sra = SRALoss(tiny_pair.teacher, student, cfg, student_tokenizer=tiny_pair.student.tokenizer)
    assert [p for p in sra.parameters()] == list(sra.projectors.parameters())  # only the projectors
    out = sra([{"prompt": "Name a colour.", "response": "Blue, like the sky."}, TEXTS[0]])
    out["loss"].backward()
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in sra.parameters())
    assert all(p.grad is None for p in tiny_pair.teacher.model.parameters())


def test_sra_loss_bad_input_is_one_clear_line(tiny_pair, tmp_path):
    student = tiny_pair.student.model
    with pytest.raises(SraVizError, match="student_tokenizer="):
        SRALoss(tiny_pair.teacher, student, small_config(tmp_path / "run", HF_RUN))
    sra = SRALoss(tiny_pair.teacher, tiny_pair.student, small_config(tmp_path / "run", HF_RUN, method="ce"))
    with pytest.raises(SraVizError, match=r"fields \['question'\]; give 'text'"):
        sra([{"question": "why?"}])
    with pytest.raises(SraVizError, match="empty batch"):
        sra([])


def test_sra_trainer_two_steps_write_a_checkpoint_that_from_pretrained_loads(tiny_pair, tmp_path):
    import copy

    from transformers import AutoModelForCausalLM, TrainingArguments

    from sra_viz.hf_trainer import PROJECTORS_FILE, SRATrainer

    student = copy.deepcopy(tiny_pair.student.model)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    args = TrainingArguments(
        str(tmp_path / "trainer"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=2,
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = SRATrainer(
        model=student,
        args=args,
        teacher=tiny_pair.teacher,
        processing_class=tiny_pair.student.tokenizer,
        train_dataset=[*TEXTS, {"prompt": "Name a colour.", "response": "Blue, like the sky."}],
        sra_config=DistillConfig(max_length=32),
        probe_texts=TEXTS[:2],
        heldout_texts=TEXTS[2:],
    )
    teacher_before = [p.detach().clone() for p in tiny_pair.teacher.model.parameters()]
    projector_before = [p.detach().clone() for p in trainer.sra_loss.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2
    rows = trainer.state.log_history
    trained = [r for r in rows if "loss" in r]
    assert len(trained) == 2 and all(r["sra_span"] > 0 and r["sra_kd"] >= 0 for r in trained)
    probed = [r for r in rows if "probe_cos" in r]
    assert [r["step"] for r in probed] == [1, 2] and all("heldout_loss" in r for r in probed)
    # the student and its projectors moved, the teacher did not
    assert any(not torch.equal(before[n], p) for n, p in student.named_parameters())
    projectors_after = list(trainer.sra_loss.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(projector_before, projectors_after, strict=True))
    teacher_after = list(tiny_pair.teacher.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher_after, strict=True))
    folder = tmp_path / "trainer" / "checkpoint-2"
    assert (folder / PROJECTORS_FILE).is_file()
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    for name, param in loaded.named_parameters():
        torch.testing.assert_close(param, dict(student.named_parameters())[name])


def test_sra_trainer_trains_a_lora_student_and_saves_it_merged(tiny_pair, tmp_path):
    import copy

    from transformers import AutoModelForCausalLM, TrainingArguments

    from sra_viz.distill.lora import add_lora, merge_lora
    from sra_viz.hf_trainer import SRATrainer

    student = copy.deepcopy(tiny_pair.student.model)
    adapters = add_lora(student, 2, 4, "q_proj,v_proj")
    base = {n: p.detach().clone() for n, p in student.named_parameters() if "lora_" not in n}
    args = TrainingArguments(
        str(tmp_path / "lora"),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
    )
    trainer = SRATrainer(
        model=student,
        args=args,
        teacher=tiny_pair.teacher,
        processing_class=tiny_pair.student.tokenizer,
        train_dataset=TEXTS,
        sra_config=DistillConfig(max_length=32),
    )
    in_optimizer = {id(p) for g in trainer.create_optimizer().param_groups for p in g["params"]}
    named = dict(student.named_parameters())
    assert {id(named[n]) for n in adapters} <= in_optimizer  # the adapters are in the optimizer
    trainer.train()
    assert all(torch.equal(base[n], p) for n, p in student.named_parameters() if "lora_" not in n)
    assert any(float(named[n].detach().abs().sum()) > 0 for n in adapters if ".lora_B." in n)
    ids = torch.tensor([[2, 651, 4320, 8426]])
    student.eval()
    with torch.no_grad():
        expected = student(ids).logits
    assert merge_lora(student) == 2 * len(student.model.layers)
    trainer.save_model(str(tmp_path / "merged"))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, expected, rtol=1e-4, atol=1e-4)
