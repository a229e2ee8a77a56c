"""What a run shows on the terminal, and the complete log it keeps in the workdir.

The terminal gets our own messages, other libraries' warnings (`--log_level` lowers that
bar), one progress bar over the training steps and the results. `<workdir>/log.txt`
(`log.<process>.txt` for processes after the first) gets every message at INFO and up,
the libraries' included, so nothing shown or hidden is lost.
"""

import contextlib
import logging
import logging.handlers
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import tqdm
from absl import logging as absl_logging

LOG_FILE = "log.txt"
# Pass as `extra=` to keep one of our INFO messages in the log file only.
FILE_ONLY = {"file_only": True}
_OUR_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep
    for name in ("avkd_jax", "teachers")
)
# Library warnings about choices we made on purpose; the log file keeps them.
_EXPECTED_WARNINGS = (
    "Using custom data configuration",  # TFDS, for builder configs made per dataset.
    "`FeatureConnector.dtype` is deprecated",  # TFDS's own features call it.
)


def is_ours(record: logging.LogRecord) -> bool:
    return record.pathname.startswith(_OUR_DIRS)


class _TerminalFilter(logging.Filter):
    """Our messages at INFO and up; other libraries' from `library_level` up."""

    def __init__(self, library_level: int):
        super().__init__()
        self.library_level = library_level

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        if is_ours(record):
            return record.levelno >= logging.INFO
        if record.levelno < self.library_level:
            return False
        return self.library_level < logging.WARNING or not any(
            record.getMessage().startswith(w) for w in _EXPECTED_WARNINGS
        )


class _TerminalFormatter(logging.Formatter):
    """A message as a line: INFO bare, others prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


class _TerminalHandler(logging.StreamHandler):
    """Writes through tqdm, which redraws an active progress bar below the line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 -- logging must never raise into the run.
            self.handleError(record)


def log_path(workdir: str, process_index: int = 0) -> str:
    name = LOG_FILE if process_index == 0 else f"log.{process_index}.txt"
    return os.path.join(workdir, name)


_HELD_NATIVE: list[str] = []


@contextlib.contextmanager
def holding_native_stderr():
    """Holds what is written to file descriptor 2 meanwhile (TensorFlow's C++ notices at
    import, which no log level silences) for the log file; shows it if the block raises."""
    saved, held = os.dup(2), tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        held.seek(0)
        text = held.read().decode("utf-8", errors="replace")
        held.close()
        if failed:
            sys.stderr.write(text)
        elif text:
            _keep_native(text)


def _keep_native(text: str) -> None:
    """Native output held by `holding_native_stderr`, into the log file once attached."""
    files = [h for h in _our_handlers(logging.getLogger()) if h._avkd == "file"]
    if not files:
        _HELD_NATIVE.append(text)
    for handler in files:
        handler.stream.write(text)
        handler.flush()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and reads one TFRecord with native stderr held: its C++ notices at
    import and the one it logs at a process's first TFRecord read go to the log file."""
    with holding_native_stderr():
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "one.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                writer.write(b"")
            for _ in tf.data.TFRecordDataset(path):
                pass


def _our_handlers(root: logging.Logger) -> list:
    return [h for h in root.handlers if getattr(h, "_avkd", None)]


def setup(library_level: str = "WARNING") -> None:
    """Routes every log record (INFO and up) to the terminal as the module docstring says,
    and holds them all for `attach_log_file`. Replaces absl's handler on the root logger;
    call after flags are parsed, before JAX starts (its backend probe logs)."""
    root = logging.getLogger()
    for handler in [absl_logging.get_absl_handler(), *_our_handlers(root)]:
        root.removeHandler(handler)
    level = logging.getLevelName(library_level.upper())
    root.setLevel(min(level, logging.INFO))
    absl_logging.get_absl_logger().setLevel(root.level)
    terminal = _TerminalHandler(sys.stderr)
    terminal.addFilter(_TerminalFilter(level))
    terminal.setFormatter(_TerminalFormatter())
    held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    for handler, role in ((terminal, "terminal"), (held, "held")):
        handler._avkd = role
        root.addHandler(handler)
    logging.captureWarnings(True)  # Python warnings reach the log file too.


def attach_log_file(workdir: str | None, process_index: int = 0) -> None:
    """Writes what `setup` held, and from now on every record, to `log_path(workdir,
    process_index)` (appended: a resumed run adds to it); without a workdir, stops holding.
    Processes after the first show only warnings on the terminal (or what --log_level asks)."""
    root = logging.getLogger()
    for handler in _our_handlers(root):
        if handler._avkd == "held":
            root.removeHandler(handler)
            held = handler
        elif process_index > 0:  # Our INFO lines too, unless --log_level asks for more.
            handler.setLevel(min(logging.WARNING, handler.filters[0].library_level))
    tfds = sys.modules.get("tensorflow_datasets")  # Not imported for it: tools without TFDS.
    if tfds is not None:  # Its build bars leave carriage-return residue off a terminal.
        tfds.display_progress_bar(sys.stderr.isatty() and process_index == 0)
    if not workdir:
        held.buffer.clear()
        return
    os.makedirs(workdir, exist_ok=True)
    log_file = logging.FileHandler(log_path(workdir, process_index), encoding="utf-8")
    log_file.setFormatter(absl_logging.PythonFormatter())
    log_file._avkd = "file"
    log_file.stream.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
    log_file.stream.write("".join(_HELD_NATIVE))
    log_file.flush()
    for record in held.buffer:
        log_file.handle(record)
    held.buffer.clear()
    root.addHandler(log_file)


def progress_bar(iterable=None, **kwargs) -> tqdm.tqdm:
    """A tqdm bar on stderr where it is an interactive terminal (or a run that has one asked
    for it: its child processes); none elsewhere (CI, a log file), where a bar leaves
    carriage-return residue. `disable=True` turns it off regardless."""
    if not kwargs.get("disable"):
        kwargs["disable"] = not (sys.stderr.isatty() or os.environ.get(_CHILD_PROGRESS) == "1")
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm.tqdm(iterable, file=sys.stderr, **kwargs)


_CHILD_PROGRESS = "AVKD_PROGRESS"
# Native (C++) log lines, e.g. TensorFlow's notices at import, and their continuation.
_NATIVE_LINE = re.compile(
    r"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::"
    r"|To enable the following instructions: )"
)


def run_child(cmd: list[str]) -> None:
    """Runs one of our tools as a child process. Its lines reach the log file and the
    terminal (its native notices the log file only), its progress bars the terminal when
    that is interactive. Raises subprocess.CalledProcessError when it fails."""
    logging.getLogger(__name__).info("Running %s", shlex.join(cmd), extra=FILE_ONLY)
    env = dict(os.environ)
    if sys.stderr.isatty():
        env[_CHILD_PROGRESS] = "1"
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    pending = b""
    for chunk in iter(lambda: child.stdout.read1(1 << 16), b""):
        *pieces, pending = re.split(rb"(\r|\n)", pending + chunk)
        for text, end in zip(pieces[::2], pieces[1::2]):
            _relay(text.decode("utf-8", errors="replace"), end == b"\r")
    if pending:
        _relay(pending.decode("utf-8", errors="replace"), False)
    if child.wait():
        raise subprocess.CalledProcessError(child.returncode, cmd)


def _relay(line: str, redrawn: bool) -> None:
    """One line of a child's output: a bar's redraw (`redrawn`) to an interactive terminal
    only, a native notice to the log file only, any other line to both."""
    if redrawn:
        if sys.stderr.isatty():
            sys.stderr.write(line + "\r")
            sys.stderr.flush()
    elif line.strip():
        extra = FILE_ONLY if _NATIVE_LINE.match(line) else None
        logging.getLogger(__name__).info("%s", line, extra=extra)


class TrainProgress:
    """The training steps on the terminal: a bar (step / total, loss, samples/s, ETA) when
    stderr is interactive, else a plain line every tenth of the run; on process 0 only."""

    LINES = 10

    def __init__(self, total_steps: int, step: int, batch_size: int, process_index: int = 0):
        self.total, self.batch_size = total_steps, batch_size
        self.enabled = process_index == 0
        self.interactive = self.enabled and sys.stderr.isatty()
        self._every = max(1, total_steps // self.LINES)
        self._start = (step, time.monotonic())
        self._bar = None
        if self.interactive:
            self._bar = progress_bar(
                total=total_steps, initial=step, desc="train", unit="step", disable=False
            )

    def update(self, step: int, loss: float) -> None:
        """Step `step` is done with loss `loss`."""
        if not self.enabled:
            return
        rate = self._rate(step)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(f"loss {loss:.4g}, {rate * self.batch_size:.1f} samples/s")
        elif step % self._every == 0 or step == self.total:
            print(self.line(step, loss, rate), file=sys.stderr, flush=True)

    def line(self, step: int, loss: float, steps_per_s: float) -> str:
        eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("nan")
        return (
            f"step {step}/{self.total} ({100 * step / self.total:.0f}%): loss {loss:.4g}, "
            f"{steps_per_s * self.batch_size:.1f} samples/s, ETA {format_seconds(eta)}"
        )

    def _rate(self, step: int) -> float:
        """Steps per second since this run (or resume) started."""
        first, t0 = self._start
        elapsed = time.monotonic() - t0
        return (step - first) / elapsed if step > first and elapsed > 0 else 0.0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_seconds(seconds: float) -> str:
    """1:02:03, 4:05 (h:mm:ss, m:ss); '?' for an unknown duration."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
