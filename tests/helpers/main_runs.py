"""`python -m avkd_jax.main` in subprocesses, for the multi-process and preemption tests.

A run is one or more processes of the real entry point on a tiny synthetic world with 4
train shards, each process given `devices` simulated CPU devices. Processes of one run
find each other through `--coordinator_address` on localhost and talk through JAX's CPU
collectives (gloo). Every run of a test session shares one persistent compilation cache,
so only the first run of each device layout pays for XLA's compile.

`NPROC` pins the size of XLA:CPU's thread pool, which is otherwise max(cores, local
devices): the compiler splits large reductions into as many parallel tasks, so without it
a process with 4 devices and one with 2 would sum in different orders.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
TIMEOUT_S = 600

CONFIG_FILE = '''"""The tiny test world: two input groups, every step logged, no evaluation."""
import sys

sys.path.insert(0, {tests!r})
from helpers.configs import tiny_config


def get_config():
    c = tiny_config({data_dir!r})
    c.input_groups = 2
    c.log_every_steps = 1
    c.checkpoint_every_steps = 4
    c.eval_every_epochs = 0
    return c
'''


def four_shard_world(tmp_path_factory) -> tuple[str, str]:
    """(config file, compilation cache dir), shared by the session's tests: the tiny world
    prepared in 4 train shards (2 input groups × 2 shards) and a config file naming it."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    from avkd_jax import datasets  # pylint: disable=g-import-not-at-top
    from helpers.configs import tiny_config  # pylint: disable=g-import-not-at-top

    base = tmp_path_factory.getbasetemp()
    data_dir, config_file = base / "four_shard_world", base / "four_shard_world.py"
    if not config_file.exists():
        builder = datasets.get_builder(tiny_config(data_dir))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
        assert len(builder.info.splits["train"].filenames) == 4
        config_file.write_text(CONFIG_FILE.format(tests=TESTS, data_dir=str(data_dir)))
    return str(config_file), str(base / "jax_compilation_cache")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Run:
    """The processes of one training run, each one's terminal saved in
    `<workdir>.<run>.<process>.log` (`log_level`: main's --log_level; None: its default)."""

    _count = 0

    def __init__(
        self,
        config_file,
        cache_dir,
        workdir,
        processes=1,
        devices=4,
        distributed=None,
        log_level="INFO",
    ):
        self.workdir = str(workdir)
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0",
            JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
            JAX_COMPILATION_CACHE_DIR=cache_dir,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            NPROC="4",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        command = [
            sys.executable,
            "-m",
            "avkd_jax.main",
            f"--config={config_file}",
            f"--workdir={self.workdir}",
        ]
        if log_level:  # Every library's INFO lines too, on every process: the markers.
            command.append(f"--log_level={log_level}")
        distributed = processes > 1 if distributed is None else distributed
        if distributed:
            command.append(f"--coordinator_address=localhost:{free_port()}")
            command.append(f"--num_processes={processes}")
        Run._count += 1
        self.logs = [f"{self.workdir}.{Run._count}.{i}.log" for i in range(processes)]
        self.procs = []
        for i, log in enumerate(self.logs):
            extra = [f"--process_id={i}"] if distributed else []
            with open(log, "w") as out:
                self.procs.append(
                    subprocess.Popen(
                        command + extra, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
                    )
                )

    def log(self, process=0) -> str:
        with open(self.logs[process], errors="replace") as f:
            return f.read()

    def wait_for(self, marker: str, process=0, timeout=TIMEOUT_S) -> None:
        """Returns as soon as `marker` appears in the process's log."""
        deadline = time.monotonic() + timeout
        while marker not in self.log(process):
            if self.procs[process].poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{marker!r} never logged:\n{self.tail(process)}")
            time.sleep(0.01)

    def signal(self, signum, process=0) -> None:
        self.procs[process].send_signal(signum)

    def finish(self, timeout=TIMEOUT_S) -> list[int]:
        """Waits for every process; their exit statuses."""
        try:
            return [p.wait(timeout) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"run timed out:\n{self.tail(0)}") from None

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()

    def tail(self, process=0, lines=40) -> str:
        return "\n".join(self.log(process).splitlines()[-lines:])


def losses(workdir) -> dict[int, list[float]]:
    """step → every train/loss logged for it in `workdir`'s TensorBoard event files, oldest
    run first (a step is logged again when a run resumes before it)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    out = {}
    for name in sorted(os.listdir(workdir)):
        if not name.startswith("events.out.tfevents"):
            continue
        try:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
                for value in event.summary.value:
                    if value.tag == "train/loss":
                        out.setdefault(event.step, []).append(float(tf.make_ndarray(value.tensor)))
        except tf.errors.DataLossError:
            pass  # The last record of a file whose writer was killed (kill -9).
    return out


def checkpoint(workdir, step=None) -> tuple[int, list[np.ndarray]]:
    """(step, parameter leaves as numpy) of a checkpoint of `workdir` (default: the latest),
    whatever devices wrote it."""
    import jax  # pylint: disable=g-import-not-at-top
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    step = manager.latest_step() if step is None else step
    path = os.path.join(workdir, "checkpoints", str(step), "default")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(path, restore_args=as_numpy)
    return step, [np.asarray(x) for x in jax.tree.leaves(restored["params"])]
