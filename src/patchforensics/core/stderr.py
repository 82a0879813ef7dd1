"""Keeping native libraries' log lines off the user's terminal.

mediapipe's C++ graphs (TensorFlow Lite, absl logging) write to file
descriptor 2 directly, before any logging is configured: every command that
finds faces printed eight lines such as ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU`` and ``W0000 … inference_feedback_manager.cc:114] Feedback
manager requires a model with a single signature…``. No environment variable
or Python setting reaches them (``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL``
were tried), so the descriptor itself is pointed at ``/dev/null`` while such a
library runs.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

# descriptor 2 is shared by the whole process: nested or concurrent users share one redirection
_lock = threading.RLock()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Discard what native code writes to file descriptor 2 inside the block.

    Python's own ``sys.stderr`` is flushed first, so nothing written before the
    block is lost; text written to stderr *inside* the block (by any thread) is
    discarded too, so keep the block to the native call alone.
    """
    with _lock:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
