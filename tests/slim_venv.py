"""The slim demo's virtual environment: deploy/demo/requirements.txt installed from the package registry into a
fresh venv (no TensorFlow), as a free host installs it.

Built once per hash of that file (and of this Python) under the temp folder (``tlx-slim-venv-<hash>``): a rerun reuses
it, a changed requirements file builds a new one. A ``built`` marker is written last, so a half-built one is built
again. `.ci/run` builds it with the other installs (``python -m tests.slim_venv``); a run of the suite without it
builds it in the fixture of tests/browser/test_slim_demo.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "deploy" / "demo" / "requirements.txt"


def slim_python() -> str:
    """The slim venv's interpreter, built first if it is not there yet."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = Path(tempfile.gettempdir()) / f"tlx-slim-venv-{digest}"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (xdist workers, two runs at once)
        if not (venv / "built").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            pip = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if pip.returncode != 0:
                raise RuntimeError(f"pip install -r {REQUIREMENTS} failed:\n{pip.stderr[-2000:]}")
            (venv / "built").write_text(digest)
    return str(venv / "bin" / "python")


if __name__ == "__main__":
    print(slim_python())
