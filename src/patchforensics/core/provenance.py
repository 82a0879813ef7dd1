"""Which code produced a result: the git commit of this package's source.

Results that are committed (``docs/findings/cells.csv``) carry the commit that computed
them, so a number can be traced to the code. A copy of the source without git (the
working tree sent to a GPU machine) names it in ``$PATCHFORENSICS_COMMIT``.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_ENV = "PATCHFORENSICS_COMMIT"
_SOURCE = Path(__file__).resolve().parents[1]      # src/patchforensics


def code_commit() -> str | None:
    """``$PATCHFORENSICS_COMMIT`` when set, else ``git rev-parse HEAD`` of the package source,
    with ``-dirty`` appended when the source differs from that commit; ``None`` without git."""
    given = os.environ.get(COMMIT_ENV, "").strip()
    if given:
        return given

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=_SOURCE, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return None
    changed = git("status", "--porcelain", "--", str(_SOURCE))
    return head + ("-dirty" if changed else "")
