"""SRA inside ``transformers.Trainer``: ``SRATrainer``, its batch collator and a probe-metrics callback.

``SRATrainer.compute_loss`` is :class:`sra_viz.distill.SRALoss` on the batch: the teacher frozen
(``requires_grad_(False)``, eval mode, no_grad pass), the student's graph kept, and

    L = α·CE + (1−α)·(L_span + λ_geo·L_geo + L_KD)

the same terms and total as ``sra-viz distill`` (one code path). Checkpointing, ``report_to``, gradient
accumulation, schedules and mixed precision come from the Trainer; the span projectors train in their
own optimizer group (``projector_lr``, no weight decay) and are saved next to each checkpoint's model as
``sra_projectors.safetensors``. Each logged row carries the mean of every term since the last one
(``sra_span``, ``sra_geo``, ...). ``SRAProbeCallback`` adds the engine's probe metrics (``probe_cos``,
``probe_cka``, ``heldout_loss``, ...: :mod:`sra_viz.distill.probe`) every ``logging_steps``.

Rows of the training set: plain texts, ``{"text": ...}`` or ``{"prompt": ..., "response": ...}``
mappings (a ``datasets.Dataset`` works), or ``sra_viz.Example``s. One process for now (a launch of
several is refused): under DDP the student's pass would have to go through the wrapped module. A LoRA
student: :func:`sra_viz.distill.lora.add_lora` on it first (only the adapters train), and
:func:`~sra_viz.distill.lora.merge_lora` before ``save_model`` for a plain folder.

Example:
    >>> trainer = SRATrainer(  # doctest: +SKIP
    ...     model=student, teacher=pair.teacher, processing_class=student_tokenizer,
    ...     args=TrainingArguments("out", max_steps=2, per_device_train_batch_size=2, report_to="none"),
    ...     train_dataset=["The cat sat on the mat.", "Paris is in France."],
    ...     sra_config=DistillConfig(max_length=64),
    ... )
    >>> trainer.train()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .distill import probe
from .distill.config import DistillConfig
from .distill.sra_loss import SRALoss
from .errors import SraVizError

PROJECTORS_FILE = "sra_projectors.safetensors"


class SRACollator:
    """Trainer rows -> ``{"sra_batch": Batch}`` (aligned, truncated and padded by the ``SRALoss``)."""

    def __init__(self, sra_loss: SRALoss):
        self.sra_loss = sra_loss

    def __call__(self, rows: Sequence[Any]) -> dict[str, Any]:
        return {"sra_batch": self.sra_loss.as_batch(list(rows))}


class SRATrainer(Trainer):
    """``transformers.Trainer`` whose loss is the student's CE plus the SRA terms (module docstring).

    ``model``: the student (a causal LM; trained in place). ``teacher``: a sra_viz ``LoadedModel`` or an HF
    causal LM with ``teacher_tokenizer``. ``processing_class``: the student's tokenizer (unless the
    student is a ``LoadedModel``). ``sra_config``: the loss options (``DistillConfig``; its optimizer and
    schedule fields are not used: the ``TrainingArguments`` drive training, except ``projector_lr``).
    ``probe_texts``: texts (at least 2 with aligned spans) whose probe metrics ``SRAProbeCallback`` logs;
    ``heldout_texts`` add the student's held-out CE.
    """

    def __init__(
        self,
        model: Any,
        args: Any = None,
        *,
        teacher: Any,
        teacher_tokenizer: Any = None,
        sra_config: DistillConfig | None = None,
        probe_texts: Sequence[Any] = (),
        heldout_texts: Sequence[Any] = (),
        **kwargs: Any,
    ):
        self.sra_loss = SRALoss(
            teacher,
            model,
            sra_config,
            teacher_tokenizer=teacher_tokenizer,
            student_tokenizer=kwargs.get("processing_class"),
        )
        self.sra_loss.teacher.model.requires_grad_(False).eval()  # frozen: never in the optimizer
        student_model = self.sra_loss.student.model
        kwargs.setdefault("processing_class", self.sra_loss.student.tokenizer)  # saved with checkpoints
        kwargs.setdefault("data_collator", SRACollator(self.sra_loss))
        if args is not None:
            args.remove_unused_columns = False  # the collator reads the rows' own fields
        super().__init__(model=student_model, args=args, **kwargs)
        if self.args.world_size > 1:  # DDP would not see the student's pass: gradients would not sync
            raise SraVizError(
                f"SRATrainer runs in one process for now ({self.args.world_size} were launched): the "
                "student's SRA pass does not go through the DDP wrapper; launch a single process"
            )
        self.loss_is_scaled_for_ga = False  # a mean per batch: the Trainer divides by accumulation steps
        if self.sra_loss.projectors is not None:
            self.sra_loss.projectors.to(self.args.device)
        self._term_sums: dict[str, float] = {}
        self._term_count = 0
        if probe_texts:
            self.add_callback(SRAProbeCallback(self, probe_texts, heldout_texts))

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The SRA total of the batch; its terms are kept (detached) for the next log row."""
        if "sra_batch" not in inputs:
            raise SraVizError(
                f"SRATrainer got a batch with {sorted(inputs)}; keep its data_collator (SRACollator), "
                "which aligns the rows for the SRA terms"
            )
        out = self.sra_loss(inputs["sra_batch"])
        if model.training:
            for name, value in out.items():
                if name != "loss":
                    self._term_sums[name] = self._term_sums.get(name, 0.0) + float(value.detach())
            self._term_count += 1
        return (out["loss"], out) if return_outputs else out["loss"]

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer plus one group for the projectors (``projector_lr``, no weight decay)."""
        optimizer = super().create_optimizer(model)
        projectors = self.sra_loss.projectors
        if projectors is not None and not any(
            p is q for g in optimizer.param_groups for p in g["params"] for q in projectors.parameters()
        ):
            optimizer.add_param_group(
                {
                    "params": list(projectors.parameters()),
                    "lr": self.sra_loss.config.projector_lr,
                    "weight_decay": 0.0,
                }
            )
        return optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training rows get the mean of each SRA term since the last row (``sra_<term>``)."""
        if "loss" in logs and self._term_count:
            logs.update({f"sra_{k}": v / self._term_count for k, v in self._term_sums.items()})
            self._term_sums, self._term_count = {}, 0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The student as a ``from_pretrained`` folder, and the projectors in a safetensors file."""
        super()._save(output_dir, state_dict)
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save and self.sra_loss.projectors is not None and folder is not None:
            from safetensors.torch import save_file

            state = {
                k: v.detach().cpu().contiguous() for k, v in self.sra_loss.projectors.state_dict().items()
            }
            save_file(state, os.path.join(folder, PROJECTORS_FILE))


class SRAProbeCallback(TrainerCallback):
    """Logs the engine's probe metrics (:mod:`sra_viz.distill.probe`) of the student every ``every``
    optimizer steps (default: the Trainer's ``logging_steps``), through ``trainer.log`` so that every
    ``report_to`` integration gets them. The teacher's probe CoMs are computed once."""

    def __init__(
        self,
        trainer: SRATrainer,
        probe_texts: Sequence[Any],
        heldout_texts: Sequence[Any] = (),
        every: int | None = None,
    ):
        sra = trainer.sra_loss
        self.trainer, self.every = trainer, every
        self.texts = probe.ProbeTexts(
            [sra.prepare(t) for t in probe_texts],
            [sra.prepare(t) for t in heldout_texts],
            sra.teacher_padding_side,
            sra.student_padding_side,
        )
        if sum(it.n_spans for it in self.texts.probe) < 2:
            raise SraVizError(
                f"the {len(probe_texts)} probe texts hold fewer than 2 aligned spans; give longer texts"
            )
        self._teacher: probe.ProbeTeacher | None = None

    def metrics(self) -> dict[str, float]:
        """The probe metrics of the student as it is now (eval mode while measured)."""
        sra = self.trainer.sra_loss
        if self._teacher is None:
            self._teacher = probe.teacher_probe(sra.teacher, self.texts, sra.config, sra.plan)
        model = sra.student.model
        was_training = model.training
        model.eval()
        try:
            projector = sra.projectors[-1] if sra.projectors is not None else None
            values, _ = probe.evaluate_probe(
                self._teacher, sra.student, sra.heads, self.texts, sra.config, sra.plan, projector
            )
        finally:
            model.train(was_training)
        if not self.texts.heldout:  # no held-out texts: no held-out CE to report
            values = {k: v for k, v in values.items() if not k.startswith("heldout_")}
        return values

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        every = self.every or int(args.logging_steps) or 1
        if state.global_step % every == 0 or state.global_step == state.max_steps:
            should_log = control.should_log  # trainer.log resets it; the step's loss row must still come
            self.trainer.log(dict(self.metrics()))
            control.should_log = self.trainer.control.should_log = should_log
        return control
