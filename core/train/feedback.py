"""What a run tells: a JSON-lines log, a rich progress bar on stderr, optional TensorBoard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import UsageError, param, render_params
from ..files import atomic_write_text


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class JsonlLog:
    """Append-only ``log.jsonl``: one JSON object per line, flushed at once.

    Every record has ``event``, ``step`` and ``time``. :meth:`truncate_after`
    drops the records a killed run wrote past the state it is resumed from.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, step: int, **fields: Any) -> None:
        record = {"event": event, "step": step, "time": round(time.time(), 3), **_json_safe(fields)}
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    @staticmethod
    def truncate_after(path: str | Path, step: int) -> None:
        """Keep only the records of ``path`` with ``step <= step`` (and drop a torn last line)."""
        path = Path(path)
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(record.get("step", 0)) <= step:
                kept.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class Reporter:
    """Messages and progress on stderr (rank 0 only; silent with ``quiet``).

    On a terminal, a progress bar that moves at every step; otherwise (a log
    file, a pipe) one line after the first step and at every logged step, so
    a slow run shows its pace from the start.
    """

    def __init__(
        self, quiet: bool = False, enabled: bool = True, console: Console | None = None, name_of: Callable[[str], str] | None = None
    ):
        #: How a parameter marked in a message (:func:`semcorr.errors.param`) is named: the CLI passes its flags.
        self.name_of = name_of
        self.enabled = enabled
        self.active = enabled and not quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._lines: dict[str, Any] | None = None

    def info(self, message: str) -> None:
        if self.active:
            self.console.print(render_params(message, self.name_of), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        """Shown even with ``quiet`` (on rank 0)."""
        if self.enabled:
            self.console.print(f"[yellow]semcorr: warning:[/] {render_params(message, self.name_of)}", highlight=False, soft_wrap=True)

    def start(self, total: int, completed: int) -> None:
        if not self.active:
            return
        if not self.console.is_terminal:
            self._lines = {"total": total, "first": completed + 1, "t0": time.perf_counter(), "loss": None}
            return
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} pairs/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=completed, loss="-", speed="-")

    def update(self, step: int, loss: float | None = None, pairs_per_s: float | None = None) -> None:
        if self._lines is not None:
            self._line(step, loss, pairs_per_s)
            return
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4g}"
        if pairs_per_s is not None:
            fields["speed"] = f"{pairs_per_s:.1f}"
        self._progress.update(self._task, completed=step, **fields)

    def _line(self, step: int, loss: float | None, pairs_per_s: float | None) -> None:
        """``step 3/400  loss -0.0012  1.9 s/step  0:00:06 elapsed``, after the first step and at logged steps."""
        lines = self._lines
        assert lines is not None
        first = step == lines["first"]
        if first == (pairs_per_s is not None):  # the first step's line comes at once, the others once logged
            return
        elapsed = time.perf_counter() - lines["t0"]
        parts = [f"step {step}/{lines['total']}"]
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        parts.append(f"{elapsed / (step - lines['first'] + 1):.2f} s/step")
        if pairs_per_s is not None:
            parts.append(f"{pairs_per_s:.1f} pairs/s")
        parts.append(f"{time.strftime('%H:%M:%S', time.gmtime(elapsed))} elapsed")
        self.console.print("  ".join(parts), highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self._lines = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class TensorBoardLog:
    """Scalars to ``RUN_DIR/tensorboard`` (needs the ``tensorboard`` package)."""

    def __init__(self, logdir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(f"{param('tensorboard')} needs the 'tensorboard' package (pip install tensorboard)") from None
        self.writer = SummaryWriter(str(logdir))

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


def check_tensorboard_available() -> None:
    """Fail early, with the install hint, when ``--tensorboard`` cannot work."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(f"{param('tensorboard')} needs the 'tensorboard' package (pip install tensorboard)")
