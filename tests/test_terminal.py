"""What a run shows on the terminal and keeps in its log file (avkd_jax.terminal)."""

import logging
import os
import subprocess
import sys
import time

import pytest
from absl import logging as absl_logging

from avkd_jax import terminal


@pytest.fixture
def routed(tmp_path):
    """The root logger routed as a run routes it, restored afterwards: (workdir, library
    level setter)."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level, absl_logging.get_absl_logger().level

    def route(library_level="WARNING", process_index=0, workdir=str(tmp_path)):
        terminal.setup(library_level)
        terminal.attach_log_file(workdir, process_index)

    yield route
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if getattr(handler, "_avkd", None) == "file":
            handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    absl_logging.get_absl_logger().setLevel(saved[2])


def _library_record(level, message):
    """A record as a library outside our package logs it."""
    return logging.LogRecord(
        "orbax", level, "/site-packages/orbax/manager.py", 1, message, (), None
    )


def _ours(level, message, **extra):
    """A record as a module of avkd_jax logs it."""
    path = os.path.join(os.path.dirname(terminal.__file__), "train.py")
    record = logging.LogRecord("absl", level, path, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_terminal_shows_ours_and_library_warnings_and_the_file_keeps_all(routed, tmp_path, capsys):
    routed()
    for record in (
        _ours(logging.INFO, "ours 1"),
        _ours(logging.INFO, "ours, file only", **terminal.FILE_ONLY),
        _library_record(logging.INFO, "library info"),
        _library_record(logging.WARNING, "library warning"),
        _library_record(logging.WARNING, "Using custom data configuration: x"),
    ):
        logging.getLogger().handle(record)
    shown = capsys.readouterr().err.splitlines()
    assert shown == ["ours 1", "warning: library warning"]
    kept = open(terminal.log_path(str(tmp_path))).read()
    for text in ("ours 1", "ours, file only", "library info", "library warning", "custom data"):
        assert text in kept, text
    # absl's format in the file: level letter, date, time, thread, file:line.
    line = next(x for x in kept.splitlines() if x.endswith("library info"))
    assert line.startswith("I") and "manager.py:1] library info" in line


def test_log_level_brings_library_lines_back(routed, capsys):
    routed(library_level="INFO")
    logging.getLogger().handle(_library_record(logging.INFO, "library info"))
    logging.getLogger().handle(_library_record(logging.WARNING, "Using custom data configuration"))
    assert capsys.readouterr().err.splitlines() == [
        "library info",
        "warning: Using custom data configuration",
    ]


def test_later_processes_show_warnings_only_and_log_to_their_own_file(routed, tmp_path, capsys):
    routed(process_index=2)
    logging.getLogger().handle(_ours(logging.INFO, "ours"))
    logging.getLogger().handle(_ours(logging.WARNING, "a warning"))
    assert capsys.readouterr().err.splitlines() == ["warning: a warning"]
    assert terminal.log_path(str(tmp_path), 2) == str(tmp_path / "log.2.txt")
    assert "ours" in (tmp_path / "log.2.txt").read_text()
    assert not (tmp_path / "log.txt").exists()


def test_records_before_the_log_file_is_attached_are_kept(tmp_path, routed):
    terminal.setup("WARNING")
    logging.getLogger().handle(_library_record(logging.INFO, "before the file"))
    terminal.attach_log_file(str(tmp_path))
    text = (tmp_path / "log.txt").read_text()
    assert text.index("before the file") > text.index("=== ")


def test_native_stderr_is_held_for_the_log_file(tmp_path, routed, capfd):
    with terminal.holding_native_stderr():
        os.write(2, b"I0000 00:00:1.5   7 port.cc:153] a C++ notice\n")
    assert "C++ notice" not in capfd.readouterr().err
    routed()
    assert "port.cc:153] a C++ notice" in (tmp_path / "log.txt").read_text()
    with pytest.raises(ValueError), terminal.holding_native_stderr():
        os.write(2, b"why it failed\n")
        raise ValueError
    assert "why it failed" in capfd.readouterr().err  # Shown when the block raises.


CHILD = r"""
import sys
print("I1203 16:23:42.884177 1399 port.cc:153] a C++ notice", file=sys.stderr, flush=True)
print("To enable the following instructions: AVX2, rebuild TensorFlow", file=sys.stderr)
sys.stderr.write("bar 50%\rbar 100%\r")
print("the child's result", flush=True)
sys.exit(int(sys.argv[1]))
"""


def test_a_child_tool_reaches_the_log_its_notices_only_there(routed, tmp_path, capfd):
    routed()
    terminal.run_child([sys.executable, "-c", CHILD, "0"])
    shown = capfd.readouterr().err
    assert shown.splitlines() == ["the child's result"]  # stderr is no terminal: no bars.
    kept = (tmp_path / "log.txt").read_text()
    for text in ("port.cc:153] a C++ notice", "To enable the following", "the child's result"):
        assert text in kept, text
    assert "] bar 50%" not in kept  # A bar's redraws are no log lines.
    with pytest.raises(subprocess.CalledProcessError):
        terminal.run_child([sys.executable, "-c", CHILD, "3"])


def test_progress_lines_every_tenth_with_eta(monkeypatch, capsys):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    progress = terminal.TrainProgress(total_steps=40, step=0, batch_size=8)
    assert not progress.interactive  # pytest's stderr is not a terminal.
    for step in range(1, 41):
        progress.update(step, loss=10.0 / step)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    # Step 4: 4 steps in 4 clock ticks (1 step/s, 8 samples/s), 36 steps left.
    assert lines[0] == "step 4/40 (10%): loss 2.5, 8.0 samples/s, ETA 0:36"
    assert lines[-1].startswith("step 40/40 (100%): loss 0.25, ") and lines[-1].endswith("0:00")


def test_no_progress_on_later_processes(capsys):
    progress = terminal.TrainProgress(total_steps=10, step=0, batch_size=8, process_index=1)
    for step in range(1, 11):
        progress.update(step, loss=1.0)
    progress.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0:00"), (59.6, "1:00"), (61, "1:01"), (3723, "1:02:03"), (float("nan"), "?")],
)
def test_format_seconds(seconds, text):
    assert terminal.format_seconds(seconds) == text
