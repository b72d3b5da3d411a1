"""The training loop: one process per device, launched alone or by ``torchrun``.

:func:`train` builds the model, picks the data source its ``train_data``
needs, and runs ``optimizer`` steps on ``model.loss(batch)``, wrapped in
DistributedDataParallel when there are several processes. It never loses
work: the full state is saved atomically every ``checkpoint_every`` steps and
at the end, and a resumed run replays exactly what an uninterrupted one does
(the data order is a pure function of ``(seed, epoch, step)``; the RNG states
are restored; deterministic algorithms are requested).

A single-process run trains in a worker thread, so Ctrl-C is answered at once
even while a long step runs inside torch: the run stops at the next step
boundary when it comes within :attr:`Trainer.interrupt_grace_s`, otherwise the
state of the last finished step is saved (its weights, optimizer state,
buffers and RNG states, kept at every boundary), and ``--resume`` continues
from there exactly as an uninterrupted run would.

On a CPU the options not given take CPU-sized values (:mod:`semcorr.train.cpu`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..training_data import EvalBatchSampler, RankBatchSampler, StepOrder, collate_pairs, open_training_source
from ..errors import DataError, SemcorrError, UsageError, param
from ..losses.weak import MIN_BATCH_SIZE as WEAK_LOSS_MIN_BATCH
from ..models.base import CorrespondenceModel, load_head_weights
from ..weights import save_checkpoint
from . import distributed as D
from .feedback import JsonlLog, Reporter, TensorBoardLog, check_tensorboard_available
from .hyper import Hyper, resolve_hyper
from .options import HYPER_FIELDS, VAL_METRICS, TrainOptions
from .models import build_training_model
from .optim import build_optimizer, set_lr_factor
from .cpu import CpuDefaults, cpu_defaults, fixed_architecture
from .rundir import LOG_FILE, RUN_FORMAT, STATE_FILE, prepare_run_dir
from .schedule import lr_factor
from .state import Progress, capture_rng, load_resume_state, restore_rng, save_resume_state
from .validate import validation_metrics

#: Names the engine uses in log records; a model's own log entries with these names get a ``model_`` prefix.
RESERVED_LOG_KEYS = ("event", "step", "time", "epoch", "loss", "lr", "pairs_per_s")


class TrainingDiverged(DataError):
    """The loss or a gradient became NaN/inf; training stopped, the last good checkpoint kept."""


class TrainingInterrupted(SemcorrError):
    """Ctrl-C: the state of step ``step`` was saved; ``--resume`` continues (exit code 130).

    ``worker_alive``: the step that was running when the interrupt came is
    still inside torch in its (abandoned, daemon) thread; a command-line
    caller should end the process without waiting for it.
    """

    exit_code = 130

    def __init__(self, message: str, step: int, worker_alive: bool):
        super().__init__(message)
        self.step, self.worker_alive = step, worker_alive


class _Abandoned(Exception):
    """Raised in the training thread once the main thread has saved the state and given up on it."""


@dataclass
class Boundary:
    """What a run is between two steps, beyond its parameters and optimizer (unchanged until the next update)."""

    progress: Progress
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]]
    buffers: dict[str, torch.Tensor]


@dataclass
class TrainResult:
    """How a run ended."""

    out: Path
    step: int
    epoch: int
    finished: str
    best_metric: float | None
    best_step: int | None
    last_val: dict[str, float]
    resumed_from: int | None
    weights_sha256: str


# ----------------------------------------------------------------------------- small pieces


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> tuple[bool, bool, bool, bool]:
    """Ask for deterministic kernels (bit-identical resumes on one device; cuBLAS needs its workspace setting).

    Returns the previous settings for :func:`restore_determinism`.
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return previous


def restore_determinism(previous: tuple[bool, bool, bool, bool]) -> None:
    """Put back what :func:`configure_determinism` changed (the engine is also a library call)."""
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]


def set_train_mode(model: CorrespondenceModel) -> None:
    """Training mode; the backbone stays in eval mode (:meth:`CorrespondenceModel.train`, the one freeze policy)."""
    model.train()


def library_versions() -> dict[str, str]:
    import safetensors
    import torchvision

    from .. import __version__

    return {
        "semcorr": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def default_workers(device: torch.device) -> int:
    """DataLoader workers when not given: none on CPU (the cores train), up to 4 per GPU process."""
    if device.type != "cuda":
        return 0
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(4, (os.cpu_count() or 1) // max(per_machine, 1) - 1))


class LossModule(nn.Module):
    """``forward(batch) = model.loss(batch)``, so DistributedDataParallel can wrap the objective."""

    def __init__(self, model: CorrespondenceModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch)


def make_loader(dataset, batch_sampler, workers: int, device: torch.device, seed: int) -> DataLoader:
    """A DataLoader over ``(epoch, index)`` keys; its own generator, so the global RNG is untouched."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=collate_pairs,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )


def finite_gradients(parameters) -> bool:
    """True when every gradient is finite."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def degenerate_settings(model: CorrespondenceModel, hyper: Hyper) -> list[str]:
    """Sentences about settings under which the model's loss cannot teach anything."""
    out = []
    if model.train_data == "weak" and hyper.batch_size < WEAK_LOSS_MIN_BATCH:
        out.append(
            f"with {param('batch_size')} {hyper.batch_size} the weak loss of {model.name} is exactly 0 and nothing learns: "
            f"its negatives pair each image with another pair's target, so it needs {param('batch_size')} {WEAK_LOSS_MIN_BATCH} or more"
        )
    return out


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """One process's share of a run. ``Trainer(options).run()`` → :class:`TrainResult`."""

    #: After Ctrl-C, how long to wait for the running step to end before saving the previous boundary instead.
    interrupt_grace_s: float = 2.0

    def __init__(self, options: TrainOptions, reporter: Reporter | None = None, name_of: Callable[[str], str] | None = None):
        self.o = options
        self.env = D.dist_env_from_environ()
        self.reporter = reporter or Reporter(quiet=options.quiet, enabled=self.env.is_main, name_of=name_of)
        if not self.env.is_main:
            self.reporter = Reporter(quiet=True, enabled=False)
        self.log: JsonlLog | None = None
        self.tb: TensorBoardLog | None = None
        self.out = Path(options.out)
        #: Set (from any thread) to stop at the next step boundary, saving the state.
        self.stop_requested = threading.Event()
        self.interrupted_at: int | None = None
        self.worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self._watched = False
        self._boundary: Boundary | None = None

    # ---------------------------------------------------------------- setup

    def _check_options(self) -> None:
        o = self.o
        if o.val_metric not in VAL_METRICS:
            raise UsageError(f"{param('val_metric')} must be one of {', '.join(VAL_METRICS)}, not '{o.val_metric}'")
        for name in ("checkpoint_every", "log_every"):
            if getattr(o, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if o.val_every is not None and o.val_every < 1:
            raise UsageError(f"{param('val_every')} must be at least 1")
        if o.patience is not None and o.patience < 1:
            raise UsageError(f"{param('patience')} must be at least 1 (or 0 on the command line for no early stopping)")
        if o.val is None and (o.val_every is not None or o.val_metric != "auto"):
            raise UsageError(f"{param('val_every')} and {param('val_metric')} need {param('val')} SPEC")
        if o.tensorboard and self.env.is_main:
            check_tensorboard_available()

    def _cpu_defaults(self) -> CpuDefaults:
        """CPU-sized values for the options not given (none on a GPU)."""
        o = self.o
        if self.device.type == "cuda":
            return CpuDefaults()
        return cpu_defaults(
            o.model, {k: getattr(o, k) for k in HYPER_FIELDS}, o.model_options, fixed_architecture(o.init_weights)
        )

    def _build_model(self) -> CorrespondenceModel:
        o = self.o
        kwargs: dict[str, Any] = dict(self.cpu.model)
        kwargs.update(o.model_options)
        if o.backbone is not None:
            kwargs["backbone"] = o.backbone
        if o.backbone_weights is not None:
            kwargs["backbone_weights"] = o.backbone_weights
        if o.init_weights is not None:
            if not Path(o.init_weights).is_file():
                raise UsageError(f"{param('init_weights')} '{o.init_weights}' does not exist")
            kwargs["weights"] = o.init_weights
        try:
            model = build_training_model(o.model, **kwargs)
        except TypeError as exc:
            raise UsageError(f"model '{o.model}' does not take these options ({exc})") from None
        return model.to(self.device)

    def _run_record(self) -> dict[str, Any]:
        o = self.o
        record = {
            "format": RUN_FORMAT,
            "model": o.model,
            "train_data": self.model.train_data,
            "config": self.model.config(),
            "backbone": o.backbone,
            "backbone_weights": o.backbone_weights,
            "model_options": dict(o.model_options),
            "init_weights": o.init_weights,
            "data": o.data,
            "val": o.val,
            "val_metric": self.val_metric,
            "patience": o.patience,
            "seed": o.seed,
            "limit_pairs": o.limit_pairs,
            "world_size": self.env.world_size,
            "deterministic": o.deterministic,
            "hyper": self.hyper.to_json(),
            "epochs": self.hyper.epochs,
            "iterations": self.hyper.iterations,
            "semcorr": library_versions()["semcorr"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": o.command,
        }
        if self.cpu:
            record["cpu_defaults"] = self.cpu.to_json()
        return record

    def _open_sources(self) -> None:
        o, h = self.o, self.hyper
        self.source = open_training_source(o.data, self.model.train_data, h.image_size, o.seed, o.limit_pairs, "train")
        self.order = StepOrder(len(self.source), h.batch_size, self.env.world_size, o.seed)
        if self.order.steps_per_epoch == 0:
            raise DataError(
                f"the data spec '{o.data}' yields {len(self.source)} pairs, fewer than one batch of "
                f"{h.batch_size} × {self.env.world_size} process(es); lower {param('batch_size')}"
            )
        self.val_source = None
        self.val_metric = "loss"
        if o.val is not None:
            self.val_source = open_training_source(o.val, self.model.train_data, h.image_size, o.seed, o.limit_pairs, "val")
            has_kps = getattr(self.val_source, "provides_keypoints", False)
            if o.val_metric == "pck" and not has_kps:
                raise UsageError(f"{param('val_metric')} pck needs keypoints, and '{o.val}' gives {self.model.train_data} pairs without them")
            self.val_metric = o.val_metric if o.val_metric != "auto" else ("pck" if has_kps else "loss")
        spe = self.order.steps_per_epoch
        self.total_steps = h.epochs * spe if h.epochs is not None else int(h.iterations)  # type: ignore[arg-type]
        self.val_every = o.val_every or (spe if h.epochs is not None else min(o.checkpoint_every, self.total_steps))

    def _setup(self) -> None:
        o = self.o
        self._check_options()
        self.device = D.training_device(o.device, self.env)
        if o.deterministic and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call
        D.init_process_group(self.env, self.device)
        seed_everything(o.seed)
        self.cpu = self._cpu_defaults()
        self.model = self._build_model()
        given = {k: getattr(o, k) for k in HYPER_FIELDS}
        self.hyper: Hyper = resolve_hyper(dict(self.model.train_defaults), dict(given, **self.cpu.hyper))
        self._open_sources()
        self.optimizer = build_optimizer(self.model, self.hyper)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        resume = self._prepare_run_dir()
        self.previous_determinism = configure_determinism(o.deterministic)
        self.progress = Progress()
        self.resumed_from: int | None = None
        if resume:
            self._restore()
        self.workers = o.workers if o.workers is not None else default_workers(self.device)

    def _prepare_run_dir(self) -> bool:
        """Rank 0 checks and sets up the run directory; every rank learns whether to resume."""
        error: SemcorrError | None = None
        resume = False
        if self.env.is_main:
            try:
                resume = prepare_run_dir(self.out, self._run_record(), self.o.resume, self.o.overwrite)
            except SemcorrError as exc:
                error = exc
        if not D.all_agree(error is None, self.device):
            if error is not None:
                raise error
            raise UsageError("rank 0 refused to start the run (see its message)")
        return bool(D.broadcast_int(int(resume), self.device))

    def _restore(self) -> None:
        path = self.out / STATE_FILE
        state = load_resume_state(path)
        load_head_weights(self.model, state.weights, str(path))
        self.optimizer.load_state_dict(state.optimizer)
        restore_rng(state.rng_tensors, state.rng_meta)
        self.progress = state.progress
        self.resumed_from = self.last_saved_step = state.progress.step
        if self.progress.finished == "completed" and self.progress.step < self.total_steps:
            self.progress.finished = None  # the run was extended (--epochs / --iterations raised)
        if self.env.is_main:
            # a kill between the state and the checkpoint (or its sidecar) leaves last.* behind or torn: renew it
            self._write_last(self.model.head_state_dict())

    # ---------------------------------------------------------------- checkpoints

    def _checkpoint_meta(self, kind: str, metrics: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
        cfg = self.model.config()
        p = progress or self.progress
        return {
            "model": self.model.name,
            "config": cfg,
            "backbone": cfg.get("backbone"),
            "backbone_weights": cfg.get("backbone_weights"),
            "data": self.o.data,
            "val": self.o.val,
            "train_data": self.model.train_data,
            "kind": kind,
            "step": p.step,
            "epoch": p.epoch,
            "step_in_epoch": p.step_in_epoch,
            "steps_per_epoch": self.order.steps_per_epoch,
            "metrics": metrics,
            "hyper": self.hyper.to_json(),
            "seed": self.o.seed,
            "world_size": self.env.world_size,
            "versions": library_versions(),
        }

    def _save(self, train_loss: float | None) -> None:
        """Write the resumable state, then ``last.safetensors`` (rank 0; both atomic)."""
        if not self.env.is_main:
            return
        weights = self.model.head_state_dict()
        save_resume_state(self.out / STATE_FILE, weights, self.optimizer, self.progress, {"model": self.o.model, "data": self.o.data})
        self._write_last(weights, train_loss)
        if self.log:
            self.log.write("checkpoint", self.progress.step, path="last.safetensors", epoch=self.progress.epoch)

    def _write_last(self, weights: dict[str, torch.Tensor], train_loss: float | None = None, progress: Progress | None = None) -> None:
        p = progress or self.progress
        metrics: dict[str, Any] = {"val": p.last_val} if p.last_val else {}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        save_checkpoint(self.out / "last.safetensors", weights, self._checkpoint_meta("last", metrics, p))
        self.last_saved_step = p.step

    def _save_best(self, metrics: dict[str, float]) -> None:
        if self.env.is_main:
            meta = self._checkpoint_meta("best", {"val": metrics})
            save_checkpoint(self.out / "best.safetensors", self.model.head_state_dict(), meta)

    # ---------------------------------------------------------------- validation

    def _validate(self) -> bool:
        """Validate, track the best, save ``best``; True when early stopping is due."""
        assert self.val_source is not None
        rng = torch.get_rng_state()
        sampler = EvalBatchSampler(len(self.val_source), self.hyper.batch_size, self.env.rank, self.env.world_size)
        loader = make_loader(self.val_source, sampler, self.workers, self.device, self.o.seed)
        with_pck = bool(getattr(self.val_source, "provides_keypoints", False))
        metrics = validation_metrics(self.model, loader, self.device, self.o.pck_alpha, with_pck=with_pck)
        set_train_mode(self.model)
        torch.set_rng_state(rng)
        p = self.progress
        value = metrics.get(self.val_metric, float("nan"))
        better = np.isfinite(value) and (
            p.best_metric is None or (value > p.best_metric if self.val_metric == "pck" else value < p.best_metric)
        )
        if better:
            p.best_metric, p.best_step, p.bad_validations = float(value), p.step, 0
            self._save_best(metrics)
        else:
            p.bad_validations += 1
        p.last_val = {k: float(v) for k, v in metrics.items()}
        stop = self.o.patience is not None and p.bad_validations >= self.o.patience
        if self.log:
            self.log.write("val", p.step, epoch=p.epoch, metric=self.val_metric, best=p.best_metric, improved=bool(better), **metrics)
        if self.tb:
            self.tb.scalars(p.step, metrics, "val")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "pairs")
        self.reporter.info(f"step {p.step}: validation {shown}" + (" (best)" if better else ""))
        return stop

    # ---------------------------------------------------------------- the loop

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimizer update; the progress moves on with it (under :attr:`_lock`, see :meth:`_save_boundary`)."""
        p = self.progress
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.wrapped(batch)
        if not D.all_agree(bool(torch.isfinite(loss.detach()).all()), self.device):
            self._diverged("the loss", float(loss.detach()))
        loss.backward()
        if not finite_gradients(self.params):
            self._diverged("a gradient", float("nan"))
        with self._lock:
            if self._abandoned:
                raise _Abandoned
            lr = set_lr_factor(self.optimizer, lr_factor(self.hyper.lr_schedule, p.step, p.epoch, self.total_steps))
            self.optimizer.step()
            p.step += 1
            p.step_in_epoch += 1
            if p.step_in_epoch == self.order.steps_per_epoch:
                p.epoch, p.step_in_epoch = p.epoch + 1, 0
            self._mark_boundary()
        logs = {(f"model_{k}" if k in RESERVED_LOG_KEYS else k): v for k, v in logs.items()}
        return loss.detach(), dict(logs, lr=lr)

    # ---------------------------------------------------------------- Ctrl-C

    def _mark_boundary(self) -> None:
        """Keep what the state between two steps needs beyond parameters and optimizer (when answering Ctrl-C)."""
        if not self._watched:
            return
        weights = self.model.head_state_dict()
        buffers = {k: v.detach().clone() for k, v in self.model.named_buffers() if k in weights}
        self._boundary = Boundary(Progress(**{**vars(self.progress), "last_val": dict(self.progress.last_val)}), capture_rng(), buffers)

    def _save_boundary(self) -> int:
        """From the main thread: save the last step boundary's state and abandon the training thread; returns its step."""
        with self._lock:
            self._abandoned = True
            b = self._boundary
            assert b is not None
            weights = dict(self.model.head_state_dict(), **b.buffers)
            save_resume_state(
                self.out / STATE_FILE, weights, self.optimizer, b.progress, {"model": self.o.model, "data": self.o.data}, rng=b.rng
            )
            self._write_last(weights, progress=b.progress)
            if self.log:
                self.log.write("interrupted", b.progress.step, epoch=b.progress.epoch, saved="boundary")
            return b.progress.step

    def _save_interrupted(self, train_loss: float | None) -> None:
        """In the training thread, at a step boundary after Ctrl-C: save the state and stop."""
        with self._lock:
            if self._abandoned:
                raise _Abandoned
            self._save(train_loss)
            if self.log:
                self.log.write("interrupted", self.progress.step, epoch=self.progress.epoch, saved="step")
        self.interrupted_at = self.progress.step

    def _run_loop_answering_ctrl_c(self) -> None:
        """:meth:`_loop` in a daemon thread, the main thread waiting for it and for Ctrl-C.

        A second Ctrl-C while the state is being saved quits at once (the
        previous checkpoint stays).
        """
        error: list[BaseException] = []
        done = threading.Event()  # not Thread.join: a join broken by KeyboardInterrupt can leave is_alive() wrong

        def target() -> None:
            try:
                self._loop()
            except _Abandoned:
                pass
            except BaseException as exc:  # handed to the main thread
                error.append(exc)
            finally:
                done.set()

        self._watched = True
        self._mark_boundary()
        self.worker = threading.Thread(target=target, name="semcorr-train", daemon=True)
        self.worker.start()
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            self.stop_requested.set()
            self.reporter.stop()
            self.reporter.warn("interrupted; saving the state to resume from (Ctrl-C again to quit without it)")
            done.wait(self.interrupt_grace_s)
            running = not done.is_set()
            if running or (error and self.interrupted_at is None):
                # still inside a step, or its data-loading processes died of the same Ctrl-C
                self.interrupted_at = self._save_boundary()
            elif self.interrupted_at is None:  # the run ended by itself meanwhile
                return
            raise self._interrupted(running) from None
        if error:
            raise error[0]
        if self.interrupted_at is not None:  # stop_requested set by a library caller
            raise self._interrupted(False)

    def _interrupted(self, worker_alive: bool) -> TrainingInterrupted:
        step = self.interrupted_at
        assert step is not None
        return TrainingInterrupted(
            f"interrupted; the state after step {step} is saved in {self.out / STATE_FILE}: "
            f"the same command with {param('resume')} continues it", step, worker_alive,
        )  # fmt: skip

    def _diverged(self, what: str, value: float) -> None:
        p = self.progress
        last = getattr(self, "last_saved_step", None)
        if self.log:
            self.log.write("diverged", p.step, what=what, value=value, last_checkpoint_step=last)
        kept = (
            f"the last good checkpoint {self.out / 'last.safetensors'} (step {last}) was kept"
            if last is not None
            else f"no checkpoint had been written yet (one is written every {self.o.checkpoint_every} steps)"
        )
        shown = "non-finite" if np.isnan(value) and what == "a gradient" else f"{value}"
        raise TrainingDiverged(f"{what} became {shown} at step {p.step + 1} (epoch {p.epoch}); training stopped and {kept}")

    def _mean_over_ranks(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        D.all_reduce_sum(t)
        return (t / self.env.world_size).tolist()

    def _loop(self) -> None:
        o, p = self.o, self.progress
        self.wrapped: nn.Module = LossModule(self.model)
        if self.env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.wrapped, device_ids=ids, find_unused_parameters=o.find_unused_parameters
            )
        set_train_mode(self.model)
        self.reporter.start(self.total_steps, p.step)
        window_loss, window_n = 0.0, 0
        log_t, log_step = time.perf_counter(), p.step
        stop = False
        while p.step < self.total_steps and not stop:
            sampler = RankBatchSampler(self.order, p.epoch, self.env.rank, p.step_in_epoch)
            loader = make_loader(self.source, sampler, self.workers, self.device, o.seed + p.epoch)
            for batch in loader:
                epoch = p.epoch
                loss, logs = self._train_step(batch)
                loss_value = float(loss)
                window_loss, window_n = window_loss + loss_value, window_n + 1
                self.reporter.update(p.step, loss_value)
                final = p.step >= self.total_steps
                if p.step % o.log_every == 0 or final:
                    keys = sorted(logs)
                    mean = self._mean_over_ranks([loss_value] + [float(logs[k]) for k in keys])
                    now = time.perf_counter()
                    speed = (p.step - log_step) * self.order.global_batch / max(now - log_t, 1e-9)
                    log_t, log_step = now, p.step
                    record = {"loss": mean[0], **dict(zip(keys, mean[1:])), "pairs_per_s": speed}
                    if self.log:
                        self.log.write("step", p.step, epoch=epoch, **record)
                    if self.tb:
                        self.tb.scalars(p.step, record, "train")
                    self.reporter.update(p.step, mean[0], speed)
                if self.val_source is not None and (p.step % self.val_every == 0 or final):
                    stop = self._validate()
                if stop or final or p.step % o.checkpoint_every == 0:
                    mean_loss = self._mean_over_ranks([window_loss / max(window_n, 1)])[0]
                    if stop:
                        p.finished = "early-stop"
                    elif final:
                        p.finished = "completed"
                    with self._lock:
                        if self._abandoned:
                            raise _Abandoned
                        self._save(mean_loss)
                    window_loss, window_n = 0.0, 0
                if stop or final:
                    break
                if self.stop_requested.is_set() and not self.env.distributed:
                    self._save_interrupted(window_loss / max(window_n, 1) if window_n else None)
                    stop = True
                    break
        self.reporter.stop()

    def _finish(self) -> TrainResult:
        p = self.progress
        digest = weights_sha256(self.model.head_state_dict())
        prints = D.all_gather_int(int(digest[:15], 16), self.device)
        same = len(set(prints)) == 1
        if self.log:
            self.log.write(
                "end", p.step, epoch=p.epoch, finished=p.finished, best_metric=p.best_metric, best_step=p.best_step,
                weights_sha256=digest, rank_fingerprints=[f"{v:015x}" for v in prints], ranks_identical=same,
            )  # fmt: skip
        if not same:
            self.reporter.warn(f"the processes ended with different weights (fingerprints {prints})")
        return TrainResult(self.out, p.step, p.epoch, p.finished or "completed", p.best_metric, p.best_step,
                           dict(p.last_val), self.resumed_from, digest)  # fmt: skip

    def _describe_start(self) -> None:
        h, p = self.hyper, self.progress
        length = f"{h.epochs} epochs of {self.order.steps_per_epoch} steps" if h.epochs else f"{h.iterations} iterations"
        r = self.reporter
        r.info(f"training {self.o.model} ({self.model.supervision_summary}) on {self.source.describe()}")
        if self.val_source is not None:
            r.info(f"validating on {self.val_source.describe()}; metric {self.val_metric}, every {self.val_every} steps")
        r.info(
            f"{length}, batch {h.batch_size} × {self.env.world_size} process(es), {h.optimizer} lr {h.lr:g}, "
            f"image {h.image_size[1]}x{h.image_size[0]}, device {self.device}; run directory {self.out}"
        )
        if self.cpu:
            r.info(
                f"no GPU in use: CPU-sized defaults {self.cpu.as_options()} instead of the paper's sizes "
                "(recorded in run.json; any of these options given explicitly wins)"
            )
        for warning in degenerate_settings(self.model, h):
            r.warn(warning)
        if self.resumed_from is not None:
            r.info(f"resuming from step {p.step} (epoch {p.epoch})")

    def run(self) -> TrainResult:
        try:
            self._setup()
            p = self.progress
            if self.env.is_main:
                log_path = self.out / LOG_FILE
                JsonlLog.truncate_after(log_path, p.step if self.resumed_from is not None else -1)
                self.log = JsonlLog(log_path)
                if self.o.tensorboard:
                    self.tb = TensorBoardLog(self.out / "tensorboard")
                event = "resume" if self.resumed_from is not None else "start"
                self.log.write(
                    event, p.step, epoch=p.epoch, total_steps=self.total_steps, steps_per_epoch=self.order.steps_per_epoch,
                    world_size=self.env.world_size, device=str(self.device), data=self.source.describe(),
                    hyper=self.hyper.to_json(), seed=self.o.seed, argv=sys.argv,
                )  # fmt: skip
            self._describe_start()
            if p.finished is not None or p.step >= self.total_steps:
                self.reporter.info(f"the run in {self.out} had already finished at step {p.step} ({p.finished or 'completed'})")
                p.finished = p.finished or "completed"
            elif not self.env.distributed and threading.current_thread() is threading.main_thread():
                self._run_loop_answering_ctrl_c()
            else:
                self._loop()
            return self._finish()
        finally:
            if getattr(self, "previous_determinism", None) is not None:
                restore_determinism(self.previous_determinism)
            self.reporter.stop()
            if self.log:
                self.log.close()
            if self.tb:
                self.tb.close()
            D.destroy_process_group()


def train(options: TrainOptions, reporter: Reporter | None = None, name_of: Callable[[str], str] | None = None) -> TrainResult:
    """Run (or resume) a training run; see :class:`TrainOptions`.

    ``name_of`` names the parameters the run's messages mention (the CLI: its flags).
    """
    return Trainer(options, reporter, name_of).run()
