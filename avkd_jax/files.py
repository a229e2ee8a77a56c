"""Files written whole or not at all, and TFRecord record counts.

Free of JAX (and of TensorFlow until `count_records` is called), so that `teachers/`
shares it.
"""

import contextlib
import os
import re

# `<path>.tmp.<pid>`: the writer's pid tells a dead writer's leftovers from a live one's.
TMP_RE = re.compile(r"\.tmp\.(\d+)(\.[^./]+)?$")


@contextlib.contextmanager
def atomic_path(path: str, keep_extension: bool = False):
    """Yields a temporary name beside `path` to write to; renamed to `path` when the block
    ends without an exception, removed when it raises. Readers, concurrent processes and
    restarts only ever see complete files (a rename within one folder is atomic).

    Args:
      keep_extension: end the temporary name with `path`'s extension too, for writers that
        choose the format by it (PIL, matplotlib, np.save).
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    if keep_extension:
        tmp += os.path.splitext(path)[1]
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    """`data` into `path`, atomically (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    """`text` into `path`, atomically (`atomic_path`)."""
    write_bytes(path, text.encode("utf-8"))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs: a temporary file of a live one may be a concurrent
    writer's and must be kept."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # Exists, owned by someone else.
        return True
    return True


def count_records(path: str) -> int:
    """The records in one TFRecord file. TensorFlow's error on a truncated or corrupt file
    does not name it: callers catch `tf.errors.OpError` and raise their own, naming it."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
