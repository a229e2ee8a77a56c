"""Stopping for a preemption notice (SIGTERM): the exception, the exit status, the handler.

Training saves a checkpoint at the step it reached and raises `Preempted`;
`python -m avkd_jax.main` then exits with `PREEMPTED_EXIT_STATUS`, and the same command
resumes (docs/scaling_out.md, Preemption and resuming).
"""

import contextlib
import signal
import threading

import jax

# sysexits.h EX_TEMPFAIL: "try again later". `python -m avkd_jax.main` exits with it after
# a preemption checkpoint, so a scheduler or script tells "rerun me" from "done" (0).
PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
    """Training stopped at a preemption notice (SIGTERM) after saving a checkpoint.

    Attributes:
      step: the step of that checkpoint; running the same command again resumes there.
      directory: the checkpoint folder.
    """

    def __init__(self, step: int, directory: str):
        self.step, self.directory = step, str(directory)
        super().__init__(
            f"Preempted at step {step}: checkpoint saved in {self.directory}. Run the same "
            "command again to resume from it."
        )


@contextlib.contextmanager
def sigterm_notice():
    """Yields a function that says whether SIGTERM has arrived since entering.

    One process without `jax.distributed`: a handler notes the signal and training goes on
    to the end of its step, saves and stops (`Preempted`). With `jax.distributed`, JAX's
    preemption service owns SIGTERM and the processes agree on the step to stop at
    (`CheckpointManager.reached_preemption`); the function then always says False.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if jax.distributed.is_initialized() or not in_main_thread:
        yield lambda: False
        return
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)
