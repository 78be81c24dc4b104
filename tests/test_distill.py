"""The distillation engine: variants, terms, metrics, run directory, resume.

The engine's mechanics (loss terms, ablation switches, run directory, resume, NaN guard, baselines
measured alike, the CLI run killed and resumed) run on the tiny seeded pair (tests/_tiny.py, real
tokenizers); what needs real weights (student variants of the real student, KD logits compared at a
tight tolerance, the geometry really moving, the acceptance) runs on the default pair. Cheap settings
throughout: a truncated student of 1-2 blocks, batches of 2 texts, 32 tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from sra_viz.distill import DistillConfig, DistillSession, NonFiniteLossError, list_runs, load_run
from sra_viz.distill.batch import collate, label_positions
from sra_viz.distill.config import field_defaults
from sra_viz.distill.session import lr_factor
from sra_viz.distill.side_pass import pool_spans
from sra_viz.distill.student import make_student
from sra_viz.errors import SraVizError
from sra_viz.features import POOL_EPS
from sra_viz.geometry import ridge_crossfit
from sra_viz.losses import span_logit_kd, total_loss
from tests._configs import small_config


def _batch(session, n=2):
    items = [session._prepare(e) for e in session.train_examples[:n]]
    return collate(items, session.teacher_padding_side, session.student_padding_side)


# ------------------------------------------------------------------ config (no models)


def test_config_json_round_trip_and_validation():
    cfg = DistillConfig(method="uld", layer_pairs=[[-1, -1], [12, 4]], use_geo=False, data="x.jsonl")
    assert DistillConfig.from_json(cfg.to_json()) == cfg
    assert set(field_defaults()) == set(cfg.to_dict())
    for bad, match in (
        (dict(method="bogus"), "method"),
        (dict(alpha=1.5), "alpha"),
        (dict(steps=0), "steps"),
        (dict(layer_pairs=[]), "layer_pairs"),
        (dict(mass_mode="max"), "mass_mode"),
    ):
        with pytest.raises(SraVizError, match=match):
            DistillConfig(**bad).validate()
    with pytest.raises(SraVizError, match="unknown DistillConfig fields"):
        DistillConfig.from_dict({"stepz": 3})
    assert DistillConfig(use_geo=False, use_dynamics=True).distill_terms() == ["span", "kd", "ce"]
    assert DistillConfig(layer_pairs=[[8, 2], [-1, -1]], use_dynamics=True).distill_terms()[-2:] == [
        "dynamics",
        "ce",
    ]


def test_ridge_crossfit_never_sees_the_rows_it_predicts():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 30))
    Y = rng.normal(size=(40, 5))  # unrelated: in-sample a 30-dim fit would look good, out-of-fold it cannot
    pred = ridge_crossfit(X, Y, np.arange(40) // 4, ridge=1e-6)
    in_sample = X @ np.linalg.lstsq(X, Y, rcond=None)[0]
    assert np.mean((pred - Y) ** 2) > np.mean((in_sample - Y) ** 2) * 2


# ------------------------------------------------------------------ student variants


@pytest.mark.slow
def test_pool_spans_matches_a_hand_pooled_sum_and_its_gradient():
    """Weighted span pooling with scale and offset: value by hand, gradient by finite differences,
    tokens outside spans and rows of invalid spans contribute nothing (not even a NaN)."""
    torch.manual_seed(0)
    values = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    span = torch.tensor([[0, 0, 1, -1, 2], [0, 1, 1, 2, -1]])
    mass = torch.rand(2, 5, dtype=torch.double)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    offset = torch.tensor([0.5, -1.0, 2.0], dtype=torch.double)
    out = pool_spans(values, span, mass, valid, scale=0.5, offset=offset)
    expected = []
    for b in range(2):
        for k in range(3):
            if valid[b, k]:
                w = (mass[b] + POOL_EPS) * (span[b] == k)
                expected.append(offset + 0.5 * (values[b] * (w / w.sum())[:, None]).sum(0))
    assert torch.allclose(out, torch.stack(expected))
    assert torch.autograd.gradcheck(lambda v: pool_spans(v, span, mass, valid, 0.5, offset), (values,))
    poisoned = values.detach().clone()
    poisoned[0, 3] = float("nan")  # a token outside every span
    poisoned[0, 4] = float("inf")  # the token of an invalid span
    assert torch.isfinite(pool_spans(poisoned, span, mass, valid)).all()


def test_student_variants_copy_and_freeze(default_pair):
    base = default_pair.student.model
    before = {n: p.detach().clone() for n, p in list(base.named_parameters())[:3]}
    n_base = base.config.num_hidden_layers
    trunc = make_student(base, "truncated", k=3)
    assert trunc.n_layers == 3 and trunc.model.config.num_hidden_layers == 3
    assert base.config.num_hidden_layers == n_base and len(base.model.layers) == n_base  # base untouched
    emb = trunc.model.get_input_embeddings().weight
    assert emb is trunc.model.get_output_embeddings().weight and not emb.requires_grad  # tied, frozen
    assert all(not n.startswith("model.embed_tokens") for n in trunc.trainable)
    last = make_student(base, "last_k", k=2)
    assert {n.split(".")[2] for n in last.trainable if n.startswith("model.layers.")} == {
        str(n_base - 2),
        str(n_base - 1),
    }
    assert "model.norm.weight" in last.trainable
    full = make_student(base, "full", k=0, freeze_embeddings=False)
    assert full.trainable_params == sum(p.numel() for p in base.parameters())
    with torch.no_grad():
        trunc.model.model.layers[0].mlp.down_proj.weight.add_(1.0)
    for name, value in before.items():
        assert torch.equal(dict(base.named_parameters())[name], value)
    with pytest.raises(SraVizError, match="out of range"):
        make_student(base, "truncated", k=n_base + 1)


# ------------------------------------------------------------------ loss terms on a real batch


def test_every_ablation_switch_selects_its_terms(tiny_pair, tmp_path):
    session = DistillSession(
        small_config(tmp_path / "abl", student_k=1, probe_size=2, heldout_size=1), pair=tiny_pair
    )
    batch = _batch(session)
    for over in (
        dict(),
        dict(use_geo=False),
        dict(use_kd=False, use_ce=False),
        dict(use_span=False),
        dict(kd_weighting="sum"),
        dict(weighted_loss=False),
    ):
        for key, value in over.items():
            setattr(session.config, key, value)
        terms = session.loss_terms(batch)
        assert list(terms) == [t for t in session.config.distill_terms()], over
        assert all(torch.isfinite(v) and v.requires_grad for v in terms.values())
        for key in over:
            setattr(session.config, key, field_defaults()[key])
    # the published sum over spans outweighs the saliency-weighted mean (ŵ sums to 1 per text)
    session.config.kd_weighting = "sum"
    kd_sum = float(session.loss_terms(batch)["kd"].detach())
    session.config.kd_weighting = "saliency"
    assert kd_sum > 3 * float(session.loss_terms(batch)["kd"].detach())
    # weighted vs uniform span weights give different span losses
    a = float(session.loss_terms(batch)["span"].detach())
    session.config.weighted_loss = False
    assert float(session.loss_terms(batch)["span"].detach()) != pytest.approx(a, abs=1e-7)


def test_kd_and_ce_in_one_step_equal_the_two_terms_taken_apart(tiny_pair, tmp_path, monkeypatch):
    """The engine trains L_KD and L_CE in one autograd step (loss_terms.kd_and_ce_terms): the same values
    and the same gradients of every trainable weight as kd_term + ce_term."""
    from sra_viz.distill import loss_terms

    session = DistillSession(
        small_config(tmp_path / "kdce", student_k=1, probe_size=2, heldout_size=1, alpha=0.3), pair=tiny_pair
    )
    batch = _batch(session, n=3)

    def taken_apart(batch, heads, logits, *rest):
        return loss_terms.kd_term(heads, logits, *rest), loss_terms.ce_term(batch, logits)

    results = []
    for split in (False, True):
        if split:
            monkeypatch.setattr(loss_terms, "kd_and_ce_terms", taken_apart)
        terms = session.loss_terms(batch)
        assert list(terms) == session.config.distill_terms()
        loss = total_loss(terms, alpha=session.config.alpha, lambda_geo=session.config.lambda_geo)
        grads = torch.autograd.grad(loss, session.params)
        results.append(({k: float(v.detach()) for k, v in terms.items()}, grads))
    (one, one_grads), (apart, apart_grads) = results
    assert one["ce"] > 0.1 and one["kd"] > 0.0
    for name in apart:
        assert one[name] == pytest.approx(apart[name], rel=1e-5), name
    for g, h in zip(one_grads, apart_grads, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_kd_logits_equal_the_heads_applied_to_the_centers(default_pair, tmp_path):
    """The engine pools token logits instead of running the heads on CoMs: the two must agree.

    On the real pair: a random tiny pair gives near-uniform distributions over 46k tokens, whose KL is a
    float32 difference of two large sums, below the rel=1e-4 this test holds the two paths to."""
    from sra_viz.distill.side_pass import run_side

    cfg = small_config(
        tmp_path / "kd", student_k=1, probe_size=2, heldout_size=1, teacher_head_dtype="float32"
    )
    session = DistillSession(cfg, pair=default_pair)
    batch = _batch(session)
    cfg = session.config
    with torch.no_grad():
        last = session.student_last
        s = run_side(
            session.student_view,
            batch,
            "student",
            [last],
            session.plan.mass_layers_of("student", [last]),
            cfg.mass_mode,
            True,
            grad=False,
        )
        logits = session.student_logits(s.forward.hidden[last])
        valid = batch.span_valid
        pooled = pool_spans(logits, s.span_index, s.pool_mass[last], valid)  # (M, V_S)
        direct = session.student_logits(s.centers[session.student_last])[valid]
        assert pooled.shape[0] == int(valid.sum()) > 0
        assert torch.allclose(pooled, direct, atol=1e-3, rtol=1e-4)
        t = run_side(
            session.teacher,
            batch,
            "teacher",
            [session.teacher_last],
            {session.teacher_last: None},
            "uniform",
            False,
            grad=False,
        )
        h = t.centers[session.teacher_last][valid]  # (M, D_T)
        full = session.teacher_logits(h)[:, session.shared.teacher_ids]  # (M, V∩)
        s_ids = session.shared.student_ids
        shared = session.teacher_shared_logits(h)  # (M, V_S) in student order, masked outside V∩
        assert torch.allclose(shared[:, s_ids], full, atol=1e-3, rtol=1e-4)
        outside = torch.ones(shared.shape[1], dtype=torch.bool)
        outside[s_ids] = False
        assert torch.all(shared[:, outside] == -1e4)
        # masked columns change nothing: KL over V_S with the mask == KL over V∩ alone. Compared in float64:
        # the KL is Σ p_T log p_T − Σ p_T log p_S, two sums over 46k columns that cancel to a small value,
        # so float32 summation order alone moves it by ~1e-3 relative; the property is the masking.
        z_s = session.student_shared_logits(pooled)
        every_span = torch.ones(1, len(h), dtype=torch.bool)
        kl_masked = span_logit_kd(z_s.double()[None], shared.double()[None], every_span)
        kl_direct = span_logit_kd(pooled[:, s_ids].double()[None], full.double()[None], every_span)
        assert float(kl_masked) == pytest.approx(float(kl_direct), rel=1e-4)
        kl_float32 = span_logit_kd(z_s[None], shared[None], every_span)
        assert float(kl_float32) == pytest.approx(float(kl_direct), rel=5e-3)
        # the training path: pooling scaled by 1/τ from the mask, the teacher head at τ, the KL at τ = 1
        tau, every = 2.0, torch.ones(1, len(h), dtype=torch.bool)
        z_s_tau = pool_spans(
            logits, s.span_index, s.pool_mass[last], valid, scale=1 / tau, offset=session.shared_mask
        )
        assert torch.allclose(z_s_tau[:, s_ids], pooled[:, s_ids] / tau, atol=1e-4)
        assert torch.all(z_s_tau[:, outside] < -9e3)
        z_t_tau = session.teacher_shared_logits(h, tau=tau)
        assert torch.allclose(z_t_tau[:, s_ids], full / tau, atol=1e-3, rtol=1e-4)
        kl_train = span_logit_kd(z_s_tau[None], z_t_tau[None], every, 1.0)
        kl_spec = span_logit_kd(pooled[:, s_ids][None], full[None], every, tau)
        assert float(kl_train) == pytest.approx(float(kl_spec), rel=1e-4)
        # the bf16 head ("auto" on CPUs with AVX512-BF16) stays within bf16 rounding of the fp32 logits
        session.heads.teacher_shared_rows = session.heads.teacher_shared_rows.bfloat16()
        err = (session.teacher_shared_logits(h)[:, s_ids] - full).abs().max()
        assert err <= 0.02 * full.abs().max()


def test_labels_and_exact_pairs_point_at_the_response(tiny_pair, tmp_path):
    session = DistillSession(
        small_config(tmp_path / "lab", student_k=1, probe_size=2, heldout_size=1), pair=tiny_pair
    )
    batch = _batch(session, 2)
    rows, pos, targets = label_positions(batch, "student")
    for b, item in enumerate(batch.items):
        mine = pos[rows == b] - int(batch.student_offset[b])
        assert mine.min() == item.student_label_start - 1 and mine.max() == len(item.student_ids) - 2
        tok = session.pair.student.tokenizer
        response = session.train_examples[b].response
        first = tok.decode(item.student_ids[item.student_label_start :]).strip()
        assert response.strip().startswith(first[:10]) or first[:10] in response
        for t_pos, s_pos in item.exact_pairs:
            t_tok = session.teacher.tokenizer.decode([item.teacher_ids[t_pos]])
            assert t_tok == tok.decode([item.student_ids[s_pos]])
    assert targets.numel() == rows.numel() > 0


# ------------------------------------------------------------------ sessions, run directory, resume


def test_sra_session_writes_a_complete_run_directory(tiny_pair, tmp_path):
    cfg = small_config(tmp_path / "sra", checkpoint_every=1)
    base_weight = tiny_pair.student.model.model.layers[0].mlp.down_proj.weight.detach().clone()
    seen = []
    session = DistillSession(cfg, pair=tiny_pair)
    assert session.run(callback=seen.append) == "finished"
    assert [r["step"] for r in seen] == [1, 2]
    assert torch.equal(tiny_pair.student.model.model.layers[0].mlp.down_proj.weight, base_weight)
    rows = [json.loads(line) for line in (tmp_path / "sra" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        for key in ("loss", "span", "geo", "kd", "ce", "lr", "grad_norm"):
            assert np.isfinite(row[key]), key
    for row in rows:
        for key in (
            "probe_cos",
            "probe_cka",
            "probe_gram_distance",
            "probe_retrieval",
            "heldout_loss",
            "probe_cos_projector",
        ):
            assert row[key] is not None and np.isfinite(row[key]), key
        assert 0 <= row["probe_cka"] <= 1 and 0 <= row["probe_retrieval"] <= 1
    config, metrics, snaps = load_run(tmp_path / "sra")
    assert config == cfg and list(metrics["step"]) == [0, 1, 2]
    assert snaps.steps == [0, 1, 2] and snaps.teacher.shape[1] == tiny_pair.teacher.model.config.hidden_size
    assert all(s.shape == snaps.teacher.shape for s in snaps.student)
    assert len(snaps.span_text) == len(snaps.text_id) == snaps.teacher.shape[0]
    assert np.allclose(
        [snaps.saliency[snaps.text_id == t].sum() for t in np.unique(snaps.text_id)], 1.0, atol=1e-5
    )
    assert not np.allclose(snaps.student[0], snaps.student[-1])
    assert {"student.safetensors", "projectors.safetensors", "state.safetensors", "state.json"} <= {
        p.name for p in (tmp_path / "sra" / "checkpoint").iterdir()
    }
    (summary,) = list_runs(tmp_path)
    assert summary.state == "finished" and summary.steps_done == 2 and summary.method == "sra"


@pytest.mark.parametrize("warmup, total", [(0, 1), (0, 2), (0, 9), (1, 1), (1, 2), (3, 4), (3, 30), (5, 5)])
def test_lr_schedule_is_transformers_cosine_after_the_warm_up_only(warmup, total):
    """The session's schedule (``lr_factor``) against ``transformers.get_cosine_schedule_with_warmup`` at
    every step: equal once the warm-up is over (all steps without one, total = 1 included); during it
    transformers' factor is s/W, 0 at the first update, ours (s+1)/(W+1), so ours is kept."""
    from transformers import get_cosine_schedule_with_warmup

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    ours = [lr_factor(s, warmup, total) for s in range(total)]
    for s in range(total):
        if s >= warmup:
            assert ours[s] == pytest.approx(theirs[s], abs=1e-12), s
        else:
            assert theirs[s] == pytest.approx(s / warmup) and ours[s] == pytest.approx((s + 1) / (warmup + 1))
    assert warmup == 0 or (theirs[0] == 0.0 and ours[0] > 0)  # transformers' first update is lr 0


def test_stopped_run_resumes_exactly_where_it_was(tiny_pair, tmp_path):
    """Stopped at step 2, inside the warm-up of 3 steps, and resumed: the same losses, probe metrics and
    learning rates (the schedule restored from the checkpoint) as the run that went straight through."""
    steps = dict(steps=4, warmup_steps=3, log_every=2, snapshot_every=2)
    straight = DistillSession(small_config(tmp_path / "straight", **steps), pair=tiny_pair)
    straight.run()
    cfg = small_config(tmp_path / "split", **steps)
    first = DistillSession(cfg, pair=tiny_pair)

    def stop_after_two(row):
        if row["step"] == 2:
            threading.Thread(target=first.stop).start()  # stop() comes from another thread, as in the app

    assert first.run(callback=stop_after_two) == "stopped" and first.step_count == 2
    _, metrics, _ = load_run(tmp_path / "split")
    assert metrics["step"].max() == 2
    again = DistillSession.resume(tmp_path / "split", pair=tiny_pair)
    assert again.step_count == 2 and again.run() == "finished"
    # training rows only: a stop also logs an evaluation row of its last step (held-out measures)
    a = [r for r in straight.history if r["step"] > 0 and r.get("loss") is not None]
    _, b, _ = load_run(tmp_path / "split")
    b = b[(b["step"] > 0) & b["loss"].notna()].to_dict("records")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):  # same config -> same numbers on CPU, through a stop and a resume
        for key in ("loss", "span", "geo", "kd", "ce", "probe_cka"):
            if ra.get(key) is not None:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (ra["step"], key)
        factor = lr_factor(ra["step"] - 1, 3, 4)  # the rates of the update of this step
        assert ra["lr"] == rb["lr"] == pytest.approx(cfg.lr * factor, rel=1e-12), ra["step"]
        assert ra["projector_lr"] == rb["projector_lr"] == pytest.approx(cfg.projector_lr * factor, rel=1e-12)


def test_a_warm_teacher_cache_gives_the_losses_of_a_run_without_one(tiny_pair, tmp_path, monkeypatch):
    """Same seed, same config: a run whose teacher side is read from the cache (filled by a first run)
    logs the losses, probe and held-out measures of a run that computes it (teacher_cache="off") to
    1e-6 relative."""
    monkeypatch.setenv("SRA_VIZ_TEACHER_CACHE", str(tmp_path / "cache"))
    quick = dict(
        steps=3,
        log_every=10,
        snapshot_every=10,
        eval_size=2,
        eval_max_new_tokens=2,
        probe_size=2,
        heldout_size=1,
    )
    rows, cached = {}, {}
    for name, cache in (("cold", "on"), ("warm", "on"), ("off", "off")):
        session = DistillSession(small_config(tmp_path / name, teacher_cache=cache, **quick), pair=tiny_pair)
        assert session.run() == "finished"
        rows[name] = [r for r in session.history if r["step"] > 0]
        cached[name] = session.teacher_cache.hits if session.teacher_cache is not None else None
    assert [r["teacher_cached"] for r in rows["cold"]] == [0, 0, 0]
    assert [r["teacher_cached"] for r in rows["warm"]] == [2, 2, 2]  # every text of every step
    assert cached["warm"] == 2 * 3 + 2 + 2  # training texts, probe texts, held-out evaluation texts
    assert all("teacher_cached" not in r for r in rows["off"])
    measures = ("loss", "span", "geo", "kd", "ce", "grad_norm", "probe_cka", "probe_cos", "eval_vcap_kl")
    for warm, off in zip(rows["warm"], rows["off"], strict=True):
        for key in measures:
            if key in off:
                assert warm[key] == pytest.approx(off[key], rel=1e-6, abs=0.0), (warm["step"], key)
    assert "probe_cka" in rows["off"][-1] and "eval_vcap_kl" in rows["off"][-1]


def test_nonfinite_loss_stops_without_applying_the_update(tiny_pair, tmp_path):
    session = DistillSession(
        small_config(tmp_path / "nan", steps=5, log_every=100, snapshot_every=100, checkpoint_every=1),
        pair=tiny_pair,
    )
    session.step()
    params = dict(session.student.model.named_parameters())
    poisoned = session.student.trainable[0]
    with torch.no_grad():
        params[poisoned].view(-1)[0] = float("nan")
    others = {n: params[n].detach().clone() for n in session.student.trainable[1:4]}
    proj = [p.detach().clone() for p in session.projectors.parameters()]
    status = session.run()
    assert status == "failed" and "non-finite" in session.error and session.step_count == 1
    for name, value in others.items():
        assert torch.equal(params[name], value), name
    assert all(torch.equal(a, b) for a, b in zip(proj, session.projectors.parameters(), strict=True))
    with pytest.raises(NonFiniteLossError):
        session.step()
    status_file = json.loads((tmp_path / "nan" / "status.json").read_text())
    assert status_file["state"] == "failed" and "non-finite" in status_file["message"]
    from sra_viz.distill.runs import load_checkpoint

    saved = load_checkpoint(tmp_path / "nan")  # the last good checkpoint (step 1) is kept
    assert saved.state["step"] == 1 and torch.isfinite(saved.student[poisoned]).all()


def test_baselines_are_measured_exactly_like_sra(tiny_pair, tmp_path):
    """Step-0 probe metrics depend on the student and the probe, never on the method."""
    rows = {}
    for method in ("sra", "uld", "exact"):
        session = DistillSession(
            small_config(tmp_path / method, method=method, steps=1, probe_size=2, heldout_size=1),
            pair=tiny_pair,
        )
        session.run()
        rows[method] = session.history
        assert session.projectors is None if method != "sra" else session.projectors is not None
        term = {"sra": "kd", "uld": "uld", "exact": "exact"}[method]
        assert np.isfinite(rows[method][1][term]) and rows[method][1][term] >= 0
    for key in ("probe_cos", "probe_cka", "probe_gram_distance", "probe_retrieval", "heldout_loss"):
        assert rows["uld"][0][key] == pytest.approx(rows["sra"][0][key], rel=1e-6)
        assert rows["exact"][0][key] == pytest.approx(rows["sra"][0][key], rel=1e-6)
    assert "probe_cos_projector" not in rows["uld"][0]


# ------------------------------------------------------------------ CLI errors (no model is loaded)


def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys):
    from sra_viz.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": oops}\n')
    cases = [
        (["--data", str(bad)], "line 2"),
        (["--teacher", str(tmp_path / "no_such_model")], "no_such_model"),
        (["--resume", str(tmp_path), "--lr", "0.1"], "--lr"),
        (["--resume", str(tmp_path)], "no config.json"),
        (["--alpha", "2"], "alpha"),
    ]
    for args, needle in cases:
        out = [] if "--resume" in args else ["--out", str(tmp_path / "never")]
        assert main(["distill", *out, *args]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (args, err[-500:])
    assert not (tmp_path / "never").exists()
    # the console entry point as a user runs it: one line, no traceback
    done = subprocess.run(
        [sys.executable, "-m", "sra_viz", "distill", "--data", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "missing.jsonl" in done.stderr and "Traceback" not in done.stderr


def test_killed_cli_run_resumes_where_it_was(tiny_pair, tiny_pair_dirs, tmp_path):
    """SIGKILL mid-run (no chance to clean up), then resume: every step is logged exactly once."""
    import signal
    import time

    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "sra_viz",
        "distill",
        "--steps",
        "6",
        "--student-variant",
        "truncated",
        "--student-k",
        "2",
        "--batch-size",
        "2",
        "--max-length",
        "32",
        "--probe-size",
        "2",
        "--heldout-size",
        "1",
        "--log-every",
        "100",
        "--checkpoint-every",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
        "--teacher",
        str(tiny_pair_dirs[0]),
        "--student",
        str(tiny_pair_dirs[1]),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            rows = (
                (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
            )
            if any(json.loads(r)["step"] >= 2 for r in rows if r.strip()):
                break
            time.sleep(0.05)  # tiny-pair steps are short: look often so the kill lands right after step 2
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list_runs(tmp_path)[0].state == "interrupted"
    session = DistillSession.resume(out, pair=tiny_pair)
    assert 1 <= session.step_count <= 3
    assert session.run() == "finished"
    steps = [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(7))


@pytest.mark.slow
def test_geometric_loss_moves_the_probe_geometry_toward_the_teacher(default_pair, tmp_path):
    """Training on L_geo alone must lower the probe's Gram distance (L_geo, unweighted, on unseen texts)
    and raise CKA and the matched cosine: the whole path (masses, CoMs, gradients, optimizer) works.

    Here the geometric term alone drives the update (no CE, no KD, no span loss), so this checks the
    path of L_geo by itself; the next test checks the whole default SRA objective.
    """
    cfg = small_config(
        tmp_path / "geo",
        steps=15,
        batch_size=4,
        max_length=64,
        student_k=6,
        probe_size=8,
        heldout_size=2,
        log_every=15,
        snapshot_every=15,
        lr=5e-4,
        alpha=0.0,
        use_span=False,
        use_kd=False,
        use_ce=False,
        warmup_steps=3,
    )
    session = DistillSession(cfg, pair=default_pair)
    assert session.run() == "finished"
    first, last = session.history[0], session.history[-1]
    assert (first["step"], last["step"]) == (0, 15)
    assert last["probe_gram_distance"] < first["probe_gram_distance"]
    assert last["probe_cka"] > first["probe_cka"]
    assert last["probe_cos"] > first["probe_cos"]


@pytest.mark.slow
def test_acceptance_truncated_student_sra_on_measures_no_method_trains(default_pair, tmp_path):
    """The acceptance of benchmarks/acceptance_distill.py, on measures no method optimizes directly (the
    probe Gram distance is what L_geo trains, so it proves nothing): 20 steps, truncated student (6
    blocks), seed 0, every other option at its default; SRA and the CE-only control on the same batches.

    Measured by benchmarks/compare_methods.py over seeds 0-2 (README): every method lowers the held-out
    CE (16.86 -> 12.4-12.9) and the V∩ KL (14.89 -> 10.6-10.9); SRA's probe CKA ends above CE-only's
    (and ULD's) on all three seeds, by 0.0015-0.015; SRA does NOT beat CE-only or ULD on held-out CE
    or teacher agreement in so short a run, so that is not asserted."""
    from sra_viz.evaluation import Evaluator, eval_examples

    evaluator = Evaluator(
        default_pair.teacher,
        default_pair.student.tokenizer,
        eval_examples(size=8),
        DistillConfig(),
        progress=False,
    )
    results = {}
    for method in ("sra", "ce"):
        cfg = DistillConfig(
            method=method,
            steps=20,
            student_variant="truncated",
            student_k=6,
            log_every=20,
            snapshot_every=20,
            checkpoint_every=0,
            eval_size=0,
            out=str(tmp_path / method),
        )
        session = DistillSession(cfg, pair=default_pair)
        before = evaluator.evaluate(session.student_view, "before", generate_text=False)
        assert session.run() == "finished"
        after = evaluator.evaluate(session.student_view, method, generate_text=False)
        results[method] = (before, after, session.history[0], session.history[-1])
    for before, after, _, _ in results.values():  # held-out texts: no session trained or probed on them
        assert after.heldout_loss < before.heldout_loss - 2.0
        assert after.vcap_kl < before.vcap_kl - 2.0
    (sra_before, sra_after, s0, s1), (_, _, c0, c1) = results["sra"], results["ce"]
    assert sra_after.teacher_agreement >= sra_before.teacher_agreement
    assert c0["probe_cka"] == s0["probe_cka"]  # same start, same measurement
    assert s1["probe_cka"] > c1["probe_cka"]  # no method trains CKA; SRA ahead of plain fine-tuning
