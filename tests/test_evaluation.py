"""Held-out evaluation, the CE-only control, sessions that evaluate themselves, export and the CLI.

The tiny seeded pair (tests/_tiny.py) covers the mechanics; the real pair only where real weights
matter (generations that mean something).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from sra_viz.cli import main
from sra_viz.data import Example, load_bundled_corpus
from sra_viz.distill import DistillConfig, DistillSession
from sra_viz.errors import SraVizError
from sra_viz.evaluation import (
    EvalResult,
    eval_examples,
    eval_split,
    load_run_evaluations,
    rouge_l,
    scored_on_characters,
)
from tests._configs import HELDOUT_RUN, small_config

KEYS = ("rouge_l", "teacher_agreement", "vcap_kl", "heldout_ppl", "n")


def test_eval_split_is_fixed_by_the_texts_and_never_trained_or_probed(tiny_pair, tiny_pair_dirs, tmp_path):
    corpus = load_bundled_corpus()
    rest, held = eval_split(corpus)
    assert len(held) == round(0.1 * len(corpus)) and len(rest) + len(held) == len(corpus)
    shuffled = list(corpus)
    random.Random(3).shuffle(shuffled)
    assert {ex.text for ex in eval_split(shuffled)[1]} == {ex.text for ex in held}  # order-free, seed-free
    assert [ex.text for ex in eval_examples(size=5)] == [ex.text for ex in held[:5]]
    held_texts = {ex.text for ex in held}
    for seed in (0, 1):
        session = DistillSession(
            small_config(tmp_path / f"s{seed}", HELDOUT_RUN, pair_dirs=tiny_pair_dirs, seed=seed),
            pair=tiny_pair,
        )
        assert not held_texts & {ex.text for ex in session.train_examples}
        # train, probe and the session's held-out CE texts partition the rest: none is held out
        assert len(session.train_examples) + session.config.probe_size + session.config.heldout_size == len(
            rest
        )
        assert [ex.text for ex in session.eval_examples] == [ex.text for ex in held[:2]]
    small = [Example("p", f"r{i}") for i in range(9)]
    with pytest.raises(SraVizError, match="9 examples is too small to hold out an evaluation set"):
        eval_split(small)


def test_rouge_l_stems_english_and_scores_other_scripts_on_characters():
    assert scored_on_characters("Москва — столица России.") and not scored_on_characters("Café au lait.")
    scores = rouge_l(
        ["The cats are running", "東京は日本の首都", "Москва столица"],
        ["the cat is running", "東京は日本の首都です", "Москва — столица России"],
    )
    assert (scores.on_words, scores.on_chars) == (1, 2)
    # stemming: cats~cat, running~running; "are"/"is" differ -> LCS 3 of 4 on both sides
    assert scores.scores[0] == pytest.approx(0.75)
    assert scores.scores[1] == pytest.approx(2 * 8 / (8 + 10))  # 8 of 10 characters, all in order
    assert 0 < scores.scores[2] < 1  # the default tokenizer would have scored 0 here
    assert rouge_l(["x"], ["Москва"]).scores == [0.0]


def test_ce_method_trains_on_the_students_own_loss_alone(tiny_pair, tiny_pair_dirs, tmp_path):
    cfg = small_config(tmp_path / "ce", HELDOUT_RUN, pair_dirs=tiny_pair_dirs, method="ce", eval_size=0)
    assert cfg.distill_terms() == ["ce"]
    session = DistillSession(cfg, pair=tiny_pair)
    before = {n: p.detach().clone() for n, p in session.student.model.named_parameters() if p.requires_grad}
    assert session.run() == "finished"
    rows = [r for r in session.history if "loss" in r]
    assert len(rows) == 2 and all(set(r) >= {"loss", "ce"} for r in rows)
    assert all(r["loss"] == pytest.approx(r["ce"]) for r in rows)  # L = CE at full weight
    assert not {"span", "geo", "kd", "uld", "exact"} & {k for r in rows for k in r}
    after = dict(session.student.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    with pytest.raises(SraVizError, match="method='ce'"):
        DistillConfig(method="ce", use_ce=False).validate()


def test_session_logs_evaluations_and_a_stopped_then_resumed_run_keeps_them(
    tiny_pair, tiny_pair_dirs, tmp_path
):
    cfg = small_config(tmp_path / "run", HELDOUT_RUN, pair_dirs=tiny_pair_dirs, steps=4)
    session = DistillSession(cfg, pair=tiny_pair)
    assert session.run(callback=lambda row: session.stop() if row["step"] == 2 else None) == "stopped"
    evaluated = [r["step"] for r in session.history if "eval_n" in r]
    assert evaluated == [0, 2]  # step 0, and the student the stopped run keeps
    teacher_file = tmp_path / "run" / "evaluation" / "teacher.json"
    stamp = teacher_file.stat().st_mtime_ns

    again = DistillSession.resume(tmp_path / "run", pair=tiny_pair)
    assert again.run() == "finished"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_n" in r] == [0, 2, 4]
    assert all(r["eval_n"] == 2 and 0.0 <= r["eval_teacher_agreement"] <= 1.0 for r in rows if "eval_n" in r)
    assert teacher_file.stat().st_mtime_ns == stamp  # the teacher's reference is computed once per run
    evals = load_run_evaluations(tmp_path / "run")
    assert (
        sorted(evals.steps) == [0, 2, 4] and evals.before is evals.steps[0] and evals.after is evals.steps[4]
    )
    assert evals.teacher is not None and evals.teacher.teacher_agreement is None
    example = evals.after.examples[0]
    assert set(example) == {"id", "prompt", "reference", "generation", "rouge_l", "scored_on"}
    assert [e["prompt"] for e in evals.before.examples] == [e["prompt"] for e in evals.teacher.examples]
    assert evals.after.to_dict()["heldout_loss"] == pytest.approx(rows[-1]["eval_heldout_loss"])


def test_export_round_trips_the_students_logits_and_loads_without_sra_viz(tiny_sra_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from sra_viz.distill.export import export_run

    run, session = tiny_sra_run
    out = export_run(run, tmp_path / "exported")
    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
    } <= names
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 1  # the truncated student, saved as the 1-block model it is
    ids = torch.tensor([[1, 504, 3458, 314, 253, 1789, 30]])
    session.student.model.eval()
    with torch.no_grad():
        expected = session.student.model(input_ids=ids).logits
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
    card = (out / "README.md").read_text()
    assert "Gemma Terms of Use" in card and "method `sra`" in card and "**2** of 2" in card
    assert all(f"`{name}`" in card for name in session.config.to_dict())
    assert "| student before |" in card and "| student after |" in card

    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sra_viz' or name.startswith('sra_viz.'):\n"
        "            raise ImportError('sra_viz is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"path = {str(out)!r}\n"
        "model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)\n"
        "ids = model.generate(**tok(['Instruction: hi\\nResponse:'], return_tensors='pt'), "
        "max_new_tokens=3, do_sample=False)\n"
        "assert 'sra_viz' not in sys.modules\n"
        "print('generated', ids.shape[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "generated" in done.stdout


def test_cli_eval_and_export_and_their_bad_input(tiny_sra_run, tiny_pair_dirs, tmp_path, capsys):
    run, _ = tiny_sra_run
    teacher_dir, student_dir = tiny_pair_dirs
    assert (
        main(["eval", str(run), "--size", "2", "--max-new-tokens", "3", "--format", "json", "--quiet"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert all(key in doc for key in KEYS) and doc["n"] == 2 and doc["kind"] == "run"
    assert set(doc["references"]) == {"teacher", "student_before"}
    assert doc["references"]["teacher"]["teacher_agreement"] is None

    exported = tmp_path / "e"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(exported),
                "--teacher",
                str(teacher_dir),
                "--size",
                "2",
                "--max-new-tokens",
                "3",
                "--format",
                "table",
                "--quiet",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "teacher" in table and "rouge_l" in table and str(exported) in table

    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    not_a_run = tmp_path / "fresh"
    from sra_viz.distill.runs import RunDir

    RunDir(not_a_run).create(small_config(not_a_run, HELDOUT_RUN, pair_dirs=tiny_pair_dirs))
    tiny_corpus = tmp_path / "tiny.jsonl"
    tiny_corpus.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(5))
    )
    cases = [
        (["eval", str(text_file)], "not a .gguf file"),
        (["eval", str(tmp_path / "missing")], "no such file or folder"),
        (["eval", str(not_a_run)], "has no checkpoint yet"),
        (["export", str(not_a_run), "--out", str(tmp_path / "x")], "has no checkpoint yet"),
        (["export", str(run), "--out", str(exported)], "exists and is not empty"),
        (["export", str(tmp_path), "--out", str(tmp_path / "y")], "is not a distillation run directory"),
        (["eval", str(student_dir), "--teacher", str(teacher_dir), "--data", str(tiny_corpus)], "too small"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert (
            len(err.splitlines()) == 1 and message in err and err.startswith(f"sra-viz {argv[0]}: error:")
        ), err
    assert main(["export", str(run), "--out", str(exported), "--force"]) == 0


def test_eval_result_dict_has_the_documented_keys():
    result = EvalResult("m", 3, 0.5, 2, 1, 0.25, 1.5, 40, 2.0, 7.39, [{"id": "a"}])
    data = result.to_dict()
    assert all(k in data for k in KEYS) and "examples" not in data
    assert result.metrics_row()["eval_rouge_l"] == 0.5 and "eval_model" not in result.metrics_row()
    assert EvalResult.from_dict(result.to_dict(with_examples=True)) == result
    assert EvalResult("m", 1, float("nan"), 0, 0, None, None, 0, None, None).to_dict()["rouge_l"] is None


@pytest.mark.slow
def test_real_pair_generations_and_agreement_mean_something(default_pair):
    from sra_viz.evaluation import Evaluator

    evaluator = Evaluator(
        default_pair.teacher,
        default_pair.student.tokenizer,
        eval_examples(size=4),
        DistillConfig(eval_max_new_tokens=24),
        progress=False,
    )
    student = evaluator.evaluate(default_pair.student, "smollm2")
    teacher = evaluator.evaluate_teacher()
    assert student.n == 4 and student.rouge_on_words + student.rouge_on_chars == 4
    assert 0.05 < student.rouge_l < 1 and 0.05 < teacher.rouge_l < 1  # real words overlap the references
    assert 0.1 < student.teacher_agreement < 1 and student.vcap_kl > 0
    assert all(ex["generation"] for ex in student.examples)
    assert 1 < student.heldout_ppl < 1000 and 1 < teacher.heldout_ppl < 1000


def test_side_by_side_joins_generations_by_prompt_and_says_when_none_were_kept():
    from sra_viz.evaluation import RunEvaluations, side_by_side

    def result(model: str, generations: list[str] | None) -> EvalResult:
        examples = [
            {"id": f"ex-{i}", "prompt": f"p{i}", "reference": f"r{i}", "generation": g, "rouge_l": 0.1 * i}
            for i, g in enumerate(generations or [])
        ]
        figures = dict(n=2, rouge_l=0.1, rouge_on_words=2, rouge_on_chars=0, teacher_agreement=None)
        figures |= dict(vcap_kl=None, n_spans=5, heldout_loss=2.0, heldout_ppl=7.4)
        return EvalResult(model=model, **figures, examples=examples)

    evals = RunEvaluations(
        result("teacher", ["t0", "t1"]), {0: result("s", ["b0", "b1"]), 3: result("s", ["a0", "a1"])}
    )
    rows = side_by_side(evals)
    assert [(r["id"], r["prompt"], r["reference"]) for r in rows] == [
        ("ex-0", "p0", "r0"),
        ("ex-1", "p1", "r1"),
    ]
    assert [r["teacher"]["generation"] for r in rows] == ["t0", "t1"]
    assert [r["student before"]["generation"] for r in rows] == ["b0", "b1"]
    assert [r["student after"]["generation"] for r in rows] == ["a0", "a1"]
    assert rows[1]["student after"]["rouge_l"] == pytest.approx(0.1)
    # a run still at step 0: no "after" column yet; a run whose files kept no generations: no rows
    assert side_by_side(RunEvaluations(evals.teacher, {0: evals.steps[0]}))[0]["student after"] is None
    assert side_by_side(RunEvaluations(result("teacher", None), {0: result("s", None)})) == []
