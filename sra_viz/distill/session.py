"""``DistillSession``: short, observable distillation runs (SRA or a token-level baseline) on CPU or GPU.

One ``step()`` = one optimizer step on one batch: the teacher's pass runs once under ``no_grad``
(hidden states of the mapped layers and the attentions that give their masses, no LM head), the
student's pass keeps the graph, the loss terms of the method are computed and combined by the
session's :class:`~.sra_loss.SRALoss` (its plan, heads and projectors built once; the same module
trains SRA in one's own loop or ``transformers.Trainer``), then
AdamW (warm-up + cosine; projectors with their own lr and no weight decay). Every ``log_every`` steps
the probe metrics are measured (:mod:`sra_viz.distill.probe`); at step 0, every ``eval_every`` steps
and at the end (or stop) the held-out evaluation (:mod:`sra_viz.evaluation`). Everything is written to the run
directory (:mod:`sra_viz.distill.runs`), which the session holds locked while it runs (one writer
per run). ``stop()`` may be called from another thread; it is honoured between steps. A non-finite
loss or gradient stops the run before the update is applied; non-finite weights after an update, or
any error inside a step, end it as "failed" too, the last good checkpoint kept.

Example:
    >>> session = DistillSession(
    ...     DistillConfig(student_variant="truncated", steps=30), pair=load_pair()
    ... )  # doctest: +SKIP
    >>> status = session.run(callback=print)  # doctest: +SKIP
    >>> again = DistillSession.resume(session.run_dir.path)  # continues where it stopped  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import SraVizError
from . import checkpoint, dist, perf, preflight, probe, tracking
from .batch import Batch, PreparedExample, collate
from .config import DistillConfig
from .runs import (
    EVALUATION,
    RunDir,
    atomic_write_text,
    check_run_folder,
    load_checkpoint,
    read_config,
    read_metrics_rows,
)
from .side_pass import SideView
from .sra_loss import SRALoss
from .student import make_student
from .teacher_cache import TeacherCache, open_teacher_cache

if TYPE_CHECKING:
    from ..data import Example

Progress = Callable[[str], None]


class NonFiniteLossError(SraVizError):
    """The run failed: a loss term, the gradient or the weights became NaN/inf, or a step raised."""


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The peak learning rate's factor for the update of step ``step + 1`` (``step`` updates done):

        f(s) = (s + 1) / (W + 1)                                      s < W   (linear warm-up)
        f(s) = ½·(1 + cos(π·min(1, (s − W) / max(1, T − W))))          s ≥ W   (cosine decay to 0 at T)

    with W = ``warmup``, T = ``total``. After the warm-up this is transformers'
    ``get_cosine_schedule_with_warmup`` step for step; during it, transformers' ``s / W`` starts at 0, so
    its first update would not move the weights, whereas every warm-up step here trains (``SRATrainer``
    runs use transformers' schedule from their ``TrainingArguments``).

    Example:
        >>> [round(lr_factor(s, 3, 7), 3) for s in range(7)]
        [0.25, 0.5, 0.75, 1.0, 0.854, 0.5, 0.146]
    """
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class DistillSession:
    """A distillation run that can be stepped, observed, stopped and resumed (see module docstring)."""

    def __init__(
        self,
        config: DistillConfig,
        pair: Any = None,
        progress: Progress | None = None,
        *,
        _resuming: bool = False,
    ):
        self.config = cfg = dataclasses.replace(config)  # a copy (checked again): the caller's stays as given
        self.progress = progress
        self._stop = threading.Event()
        self.status, self.error = "ready", ""
        self.history: list[dict[str, Any]] = []
        self.step_count, self.epoch, self.batch_in_epoch = 0, 0, 0
        self._current_step = 0  # the step being taken (0: none yet)
        self._data_iter: Iterator[list[Example]] | None = None
        self._prepared: dict[tuple[str, int], PreparedExample] = {}
        self.run_dir: RunDir | None = None
        self._reporter: tracking.Reporter | None = None  # opened at the first row (report_to)
        dist.check_launch()  # data-parallel only: a sharded launch is refused before anything is made
        if not _resuming and dist.env_dist_info().is_main:  # rank 0 makes the folder; others never look
            check_run_folder(cfg.out, new=True)
        preflight.check_against_models(cfg)
        if cfg.reuse_memory:
            perf.reuse_freed_memory()

        from ..data import load_bundled_corpus, load_examples, split_examples
        from ..evaluation import eval_split
        from ..models import load_pair, pick_device

        if cfg.data is None:
            examples = load_bundled_corpus()
        else:
            examples = load_examples(
                cfg.data, prompt_field=cfg.prompt_field, response_field=cfg.response_field
            )
        examples, held_out = eval_split(examples)  # fixed, seed-free: never trained or probed on
        self.eval_examples = held_out[: cfg.eval_size]
        self._evaluator: Any = None  # sra_viz.evaluation.Evaluator, built at the first evaluation
        self.train_examples, probe_examples, heldout_examples = split_examples(
            examples, cfg.probe_size, cfg.heldout_size, cfg.seed
        )
        self.dist = dist.env_dist_info()
        if pair is None:
            device = dist.device_for(self.dist, pick_device(cfg.device))
            self._say(f"loading teacher {cfg.teacher!r} and student {cfg.student!r} on {device}")
            pair = load_pair(cfg.teacher, cfg.student, device=device)
        self.pair, self.teacher = pair, pair.teacher
        self.device = pair.teacher.device
        self.dist = dist.init_distributed(str(self.device))
        self._seed_everything(cfg.seed)

        self.student = make_student(
            pair.student.model, cfg.student_variant, cfg.student_k, cfg.freeze_embeddings, cfg.lora_spec()
        )
        self.student.model.to(self.device)
        self.student_view = SideView(
            self.student.model, pair.student.tokenizer, f"{pair.student.name} (student copy)"
        )
        # the teacher's span CoMs and masses per text: SRA's steps, the probe and the held-out evaluation
        self.teacher_cache: TeacherCache | None = open_teacher_cache(cfg)
        # the objective: plan, heads and projectors, built once (SRALoss is the one loss code path)
        self.objective = SRALoss(self.teacher, self.student_view, cfg, teacher_cache=self.teacher_cache)
        self.teacher_padding_side = self.objective.teacher_padding_side
        self.student_padding_side = self.objective.student_padding_side
        self.plan, self.heads = self.objective.plan, self.objective.heads
        self.projectors = (
            self.objective.projectors
        )  # one per layer pair, in the plan's order (shallow -> deep)
        self._build_optimizer()
        dist.broadcast_(
            [p for p in self.projectors.parameters()] if self.projectors is not None else [], self.dist
        )

        self._say(f"aligning {len(probe_examples)} probe and {len(heldout_examples)} held-out texts")
        self.probe_texts = probe.ProbeTexts(
            [self._prepare(e) for e in probe_examples],
            [self._prepare(e) for e in heldout_examples],
            self.teacher_padding_side,
            self.student_padding_side,
        )
        if sum(it.n_spans for it in self.probe_texts.probe) < 2:
            raise SraVizError(
                "the probe texts hold fewer than 2 aligned spans; give longer texts or a larger probe_size"
            )
        self._probe_teacher: probe.ProbeTeacher | None = None
        if not _resuming:
            self._open_run_dir()

    # ------------------------------------------------------------------ set-up

    def _say(self, message: str) -> None:
        if self.progress is not None and self.dist.is_main:
            self.progress(message)

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _build_optimizer(self) -> None:
        cfg = self.config
        groups: list[dict[str, Any]] = [
            {"params": self.student.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay}
        ]
        if self.projectors is not None:
            groups.append(
                {"params": list(self.projectors.parameters()), "lr": cfg.projector_lr, "weight_decay": 0.0}
            )
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.warmup_steps, cfg.steps)
        )

    def _open_run_dir(self) -> None:
        cfg = self.config
        if cfg.out is None:
            from .. import paths

            out = str(paths.runs_dir() / f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
            if self.dist.active:  # every rank must agree on rank 0's folder name
                box = [out]
                torch.distributed.broadcast_object_list(box, src=0)
                out = box[0]
            cfg.out = out
        if self.dist.is_main:
            self.run_dir = RunDir(cfg.out).create(cfg)
            self._say(f"run directory {cfg.out}")
            # fails before step 0
            self._reporter = tracking.open_reporter(cfg.report_to, self.run_dir.path, cfg.to_dict())
            if isinstance(self._reporter, tracking.TrackioReporter):
                where = self._reporter.records_dir
                self._say(
                    f"trackio run {self._reporter.name} of project {tracking.TRACKIO_PROJECT} in {where}"
                )
        dist.barrier(self.dist)

    def _prepare(self, example) -> PreparedExample:
        key = (example.text, int(example.prompt_end or 0))
        if key not in self._prepared:
            self._prepared[key] = self.objective.prepare(example)
        return self._prepared[key]

    # ------------------------------------------------------------------ heads and layers (the plan's)

    def student_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The student's LM head on last-layer hidden states (..., D_S) -> (..., V_S) (see VocabHeads)."""
        return self.heads.student_logits(hidden)

    def teacher_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The teacher's full LM head (..., D_T) -> (..., V_T), no grad (see VocabHeads)."""
        return self.heads.teacher_logits(hidden)

    def teacher_shared_logits(self, hidden: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """The teacher's head on V∩ over ``tau``, in student vocabulary order, masked outside V∩ (see
        VocabHeads)."""
        return self.heads.teacher_shared_logits(hidden, tau)

    def student_shared_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Student logits (..., V_S) masked outside V∩ (see VocabHeads)."""
        return self.heads.student_shared_logits(logits)

    @property
    def shared(self) -> Any:
        """The shared vocabulary V∩ (None when the method does not use it)."""
        return self.heads.shared

    @property
    def shared_mask(self) -> torch.Tensor | None:
        return self.heads.shared_mask

    @property
    def teacher_last(self) -> int:
        return self.plan.teacher_last

    @property
    def student_last(self) -> int:
        return self.plan.student_last

    @property
    def probe_items(self) -> list[PreparedExample]:
        return self.probe_texts.probe

    @property
    def heldout_items(self) -> list[PreparedExample]:
        return self.probe_texts.heldout

    # ------------------------------------------------------------------ data

    def _next_examples(self) -> list:
        """This process's share of the next global batch (resumable: (epoch, batch index))."""
        from ..data import batches

        cfg, world = self.config, self.dist.world_size
        for _ in range(100_000):
            if self._data_iter is None:
                self._data_iter = batches(self.train_examples, cfg.batch_size * world, cfg.seed, self.epoch)
                for _ in range(self.batch_in_epoch):
                    next(self._data_iter, None)
            chunk = next(self._data_iter, None)
            if chunk is None:
                self.epoch, self.batch_in_epoch, self._data_iter = self.epoch + 1, 0, None
                continue
            self.batch_in_epoch += 1
            if len(chunk) >= world:  # a tail smaller than the world would leave a process without data
                return chunk[self.dist.rank :: world]
        raise SraVizError(
            f"no batch of {world} or more examples could be formed from {len(self.train_examples)}"
        )

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every active loss term of the method on one collated batch (graph kept on the student side)."""
        return self.objective.terms(batch)

    # ------------------------------------------------------------------ stepping

    @property
    def probe_teacher(self) -> probe.ProbeTeacher:
        if self._probe_teacher is None:
            self._say("computing the teacher's probe CoMs (once)")
            self._probe_teacher = probe.teacher_probe(
                self.teacher, self.probe_texts, self.config, self.plan, self.teacher_cache
            )
            if self.run_dir is not None:
                self.run_dir.write_teacher_snapshot(probe.teacher_snapshot(self._probe_teacher))
        return self._probe_teacher

    def evaluate(self, snapshot: bool = True) -> dict[str, float]:
        """Probe + held-out metrics of the current student (rank 0; other ranks get {})."""
        if not self.dist.is_main:
            return {}
        _ = self.probe_teacher
        self.student.model.eval()
        try:
            projector = self.projectors[-1] if self.projectors is not None else None  # the deepest pair's
            metrics, arrays = probe.evaluate_probe(
                self.probe_teacher,
                self.student_view,
                self.heads,
                self.probe_texts,
                self.config,
                self.plan,
                projector,
            )
        finally:
            self.student.model.train()
        if snapshot and self.run_dir is not None:
            self.run_dir.write_snapshot(self.step_count, arrays)
        return metrics

    def evaluate_heldout(self) -> dict[str, Any]:
        """The held-out evaluation (:mod:`sra_viz.evaluation`) of the current student as ``eval_*`` metrics,
        saved to ``evaluation/step_XXXXXX.json``; the teacher's is computed and saved once per run."""
        if not self.eval_examples or not self.dist.is_main:
            return {}
        from ..evaluation import Evaluator

        t0 = time.perf_counter()
        if self._evaluator is None:
            self._evaluator = Evaluator(
                self.teacher,
                self.pair.student.tokenizer,
                self.eval_examples,
                self.config,
                progress=False,
                teacher_cache=self.teacher_cache,
            )
        if self.run_dir is not None and not (self.run_dir.path / EVALUATION / "teacher.json").is_file():
            self._say(f"evaluating the teacher on {len(self.eval_examples)} held-out examples (once)")
            reference = self._evaluator.evaluate_teacher()
            self.run_dir.write_evaluation("teacher", {"step": None, **reference.to_dict(with_examples=True)})
        self.student.model.eval()
        try:
            result = self._evaluator.evaluate(self.student_view, f"student at step {self.step_count}")
        finally:
            self.student.model.train()
        if self.run_dir is not None:
            data = {"step": self.step_count, **result.to_dict(with_examples=True)}
            self.run_dir.write_evaluation(f"step_{self.step_count:06d}", data)
        return {**result.metrics_row(), "eval_heldout_time_s": time.perf_counter() - t0}

    def _evaluated(self, step: int) -> bool:
        return any(r.get("step") == step and "eval_n" in r for r in self.history)

    def _eval_due(self) -> bool:
        """Held-out evaluation after this step: every eval_every steps, at the last step, and on stop."""
        cfg, step = self.config, self.step_count
        every = cfg.eval_every > 0 and step % cfg.eval_every == 0
        return cfg.eval_size > 0 and (every or step == cfg.steps or self._stop.is_set())

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.run_dir is not None:
            self.run_dir.append_metrics(row)  # the source of truth; a reporter gets a copy
            if self._reporter is None and self.config.report_to != "none":
                self._reporter = tracking.open_reporter(
                    self.config.report_to, self.run_dir.path, self.config.to_dict()
                )
            if self._reporter is not None:
                self._reporter.log(row)

    def _due(self, every: int) -> bool:
        return every > 0 and (self.step_count % every == 0 or self.step_count == self.config.steps)

    def _ensure_initial_eval(self) -> None:
        if self.step_count == 0 and not any(r.get("step") == 0 for r in self.history) and self.dist.is_main:
            t0 = time.perf_counter()
            row = {"step": 0, **self.evaluate(snapshot=True), "eval_time_s": time.perf_counter() - t0}
            row.update(self.evaluate_heldout())
            self._log(row)

    def step(self) -> dict[str, Any]:
        """One optimizer step; returns its metrics row (probe metrics on evaluation steps).

        Raises NonFiniteLossError (the update is not applied) when a term or the gradient is NaN/inf.
        """
        if self.status == "failed":
            raise NonFiniteLossError(self.error)
        self._ensure_initial_eval()
        self._current_step = self.step_count + 1  # named by a failure (its update may be applied already)
        t0 = time.perf_counter()
        items = [self._prepare(e) for e in self._next_examples()]
        batch = collate(items, self.teacher_padding_side, self.student_padding_side)
        cached_before = self.teacher_cache.hits if self.teacher_cache is not None else 0
        parts = self.loss_terms(batch)
        loss = self.objective.total(parts)  # α·CE + (1−α)·terms; the ce control: CE at full weight
        values = torch.stack([loss.detach().float()] + [v.detach().float() for v in parts.values()])
        dist.all_reduce_mean_([values], self.dist)
        names = ["loss", *parts]
        row: dict[str, Any] = {
            "step": self.step_count + 1,
            **{n: float(v) for n, v in zip(names, values, strict=True)},
        }
        if not torch.isfinite(values).all():
            self._fail(
                f"non-finite loss at step {self.step_count + 1}: "
                + ", ".join(f"{n}={float(v):.4g}" for n, v in zip(names, values, strict=True))
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_grads_(self.params, self.dist)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._fail(
                f"non-finite gradient norm at step {self.step_count + 1} (loss {float(values[0]):.4g})"
            )
        lrs = [group["lr"] for group in self.optimizer.param_groups]  # the rates this update uses
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        if not self._weights_finite():
            self._fail(
                f"the weights became non-finite in the update of step {self.step_count} (loss "
                f"{float(values[0]):.4g}, gradient norm {grad_norm:.4g}, lr {lrs[0]:.4g})",
                weights_good=False,
            )
        row.update(
            grad_norm=grad_norm,
            lr=lrs[0],
            epoch=self.epoch,
            step_time_s=time.perf_counter() - t0,
            texts=len(items) * self.dist.world_size,
        )
        if self.projectors is not None:
            row["projector_lr"] = lrs[1]
        if self.teacher_cache is not None and self.config.method == "sra":  # texts read from the cache
            row["teacher_cached"] = (self.teacher_cache.hits - cached_before) * self.dist.world_size
        if self._due(self.config.log_every) or self._due(self.config.snapshot_every):
            t1 = time.perf_counter()
            row.update(self.evaluate(snapshot=self._due(self.config.snapshot_every)))
            row["eval_time_s"] = time.perf_counter() - t1
        if self._eval_due():
            row.update(self.evaluate_heldout())
        if self.dist.is_main:
            self._log(row)
        if self._due(self.config.checkpoint_every) and self.step_count < self.config.steps:
            self.save_checkpoint()
        if self.run_dir is not None:
            self.run_dir.write_status("running", self.step_count)
        return row

    def _weights_finite(self) -> bool:
        """Every trainable weight finite (one device sync: the largest |w| of each tensor, stacked)."""
        with torch.no_grad():
            return bool(torch.isfinite(torch.stack([p.detach().abs().amax() for p in self.params])).all())

    def _fail(self, message: str, weights_good: bool = True, details: str = "") -> None:
        """Stop for good and say why in status.json. ``weights_good``: the weights are those of the last
        completed step (the update was not applied), so a checkpoint of them is written; otherwise the
        last checkpoint written stays the last good one."""
        self.optimizer.zero_grad(set_to_none=True)
        suffix = "; the update was not applied" if weights_good else "; the last good checkpoint is kept"
        self.status, self.error = "failed", message + suffix
        if weights_good and self.step_count > 0 and self._weights_finite():
            self.save_checkpoint()
        if self.run_dir is not None:
            extra = {"traceback": details} if details else {}
            self.run_dir.write_status("failed", self.step_count, self.error, **extra)
        raise NonFiniteLossError(self.error)

    def stop(self) -> None:
        """Ask a running ``run()`` to stop after the current step (safe from any thread)."""
        self._stop.set()

    def run(self, n: int | None = None, callback: Callable[[dict], None] | None = None) -> str:
        """Run ``n`` more steps (default: up to ``config.steps``); returns the final status.

        "finished" (all steps done, checkpoint written), "stopped" (``stop()`` was called; checkpoint
        written), "running" (``n`` steps done, more to go) or "failed" (see ``self.error``). A run stopped
        between steps logs one more row for its last step: the held-out evaluation of the student it keeps.
        """
        if self.status == "failed":
            return self.status
        target = self.config.steps if n is None else min(self.config.steps, self.step_count + n)
        if self.run_dir is not None:
            self.run_dir.open()  # a no-op while held; taken again after a stop (one writer per run)
        self._stop.clear()
        self.status, self._current_step = "running", 0
        if self.run_dir is not None:
            self.run_dir.write_status("running", self.step_count)
        try:
            try:
                self._ensure_initial_eval()
                while self.step_count < target and not self._stop.is_set():
                    row = self.step()
                    if callback is not None:
                        callback(row)
            except NonFiniteLossError:
                raise
            except Exception as exc:  # the run ends as failed with its reason, never half-written
                where = f"step {self._current_step}" if self._current_step else "the step-0 evaluation"
                self._fail(
                    f"{where} raised {type(exc).__name__}: {exc}",
                    weights_good=False,
                    details=traceback.format_exc(),
                )
        except NonFiniteLossError:
            self.close()
            return self.status
        if self.step_count >= self.config.steps:
            self.status = "finished"
        elif self._stop.is_set():
            self.status = "stopped"
            if self.config.eval_size > 0 and self.dist.is_main and not self._evaluated(self.step_count):
                # stopped between steps: the student as it stays gets its evaluation row too
                self._log({"step": self.step_count, **self.evaluate_heldout()})
        else:
            return self.status
        self.save_checkpoint()
        if self.run_dir is not None:
            self.run_dir.write_status(self.status, self.step_count)
        self.close()
        return self.status

    def close(self) -> None:
        """Release the run folder's writer lock (``run()`` does so when it ends; it takes it again)."""
        if self.run_dir is not None:
            self.run_dir.close()
        if self._reporter is not None:
            self._reporter.close()
            self._reporter = None

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        """Trainable student weights, projectors, optimizer, scheduler, RNG, step and data position."""
        if self.dist.is_main and self.run_dir is not None:
            position = checkpoint.Position(self.step_count, self.epoch, self.batch_in_epoch)
            checkpoint.save(
                self.run_dir, self.student, self.projectors, self.optimizer, self.scheduler, position
            )

    def _restore_checkpoint(self, run_dir: Path) -> None:
        """Put this freshly built session in the state of ``run_dir``'s last checkpoint."""
        position = checkpoint.restore(
            run_dir, self.student, self.projectors, self.optimizer, self.scheduler, self.device
        )
        self.step_count, self.epoch, self.batch_in_epoch = (
            position.step,
            position.epoch,
            position.batch_in_epoch,
        )
        self._data_iter = None

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        pair: Any = None,
        progress: Progress | None = None,
        steps: int | None = None,
        device: str | None = None,
    ) -> DistillSession:
        """Reopen a stopped, failed or killed run at its last checkpoint; ``steps`` may extend it, ``device``
        moves it.

        The run folder is locked first (a run being written elsewhere is refused). Metrics rows past the
        checkpoint are dropped (those steps are replayed, identically on CPU); a run that died before
        its first checkpoint starts again from step 0.
        Example:
            >>> session = DistillSession.resume("runs/sra", steps=60)  # doctest: +SKIP
            >>> session.run()  # doctest: +SKIP
        """
        run_dir = Path(run_dir)
        config = read_config(run_dir)
        writer = RunDir(run_dir).open() if dist.env_dist_info().is_main else None
        try:
            saved = load_checkpoint(run_dir)
            done = int(saved.state.get("step", 0)) if saved is not None else 0
            if steps is not None and int(steps) < done:
                raise SraVizError(
                    f"--steps {steps} is below the {done} steps {str(run_dir)!r} has done; give at least "
                    f"{done}"
                )
            changes: dict[str, Any] = {"out": str(run_dir)}
            if steps is not None:
                changes["steps"] = steps
            if device is not None:
                changes["device"] = device
            config = dataclasses.replace(config, **changes)
            session = cls(config, pair=pair, progress=progress, _resuming=True)
            if saved is not None:
                session._restore_checkpoint(run_dir)
            if writer is not None:
                session.run_dir = writer
                atomic_write_text(run_dir / "config.json", config.to_json())
                writer.truncate_metrics(session.step_count if saved is not None else -1)
                writer.drop_snapshots_after(session.step_count if saved is not None else -1)
                writer.truncate_evaluations(session.step_count if saved is not None else -1)
                rows = read_metrics_rows(run_dir / "metrics.jsonl")
                session.history = [r for r in rows if int(r.get("step", 0)) <= session.step_count]
                note = "resumed" if saved is not None else "started again from step 0: it had no checkpoint"
                writer.write_status("running", session.step_count, note)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        if saved is None:
            session._say(f"{run_dir} had no checkpoint: starting it again from step 0")
        else:
            session._say(f"resumed {run_dir} at step {session.step_count}")
        return session


def resume(
    run_dir: str | Path, pair: Any = None, progress: Progress | None = None, steps: int | None = None
) -> DistillSession:
    """``DistillSession.resume`` as a function."""
    return DistillSession.resume(run_dir, pair=pair, progress=progress, steps=steps)
