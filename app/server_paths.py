"""Server paths taken out of text shown to admins (a worker's traceback, an error line): a
frame reads `worker/jobs/rounds.py` or `transformers/modeling_utils.py`, the data, temporary and
home directories `<data>/`, `<tmp>/` and `~/`.
"""

from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The checkout (or install) holding app/ and worker/: its frames are our own code."""


def _prefixes() -> list[tuple[str, str]]:
    """(server path, what it becomes), longest first: code directories vanish (a frame reads
    `torch/nn/modules/module.py`), the data, temporary and home directories get a name."""
    code: set[str] = {str(ROOT)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            code.add(path)
    try:
        code.update(site.getsitepackages())
        code.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    code.update(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p))
    named: list[tuple[str, str]] = [(p.rstrip("/") + "/", "") for p in code if p not in ("/", "")]
    try:
        from app.config import get_settings

        named.append((str(get_settings().data_dir).rstrip("/") + "/", "<data>/"))
    except Exception:  # noqa: BLE001 - settings unreadable here: paths stay as the regexes leave them
        pass
    named.append((tempfile.gettempdir().rstrip("/") + "/", "<tmp>/"))
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        named.append((home.rstrip("/") + "/", "~/"))
    return sorted(named, key=lambda item: len(item[0]), reverse=True)


_SITE = re.compile(r"(?:/[^/\s\"',:()]+)*/(?:site|dist)-packages/")
_HOME = re.compile(r"(?:/home|/Users)/[^/\s\"',:()]+/|/root/")


def strip_server_paths(text: str) -> str:
    """`text` without this server's directories: installed packages and our own code become
    module paths (`transformers/modeling_utils.py`, `worker/jobs/rounds.py`), the data,
    temporary and home directories `<data>/`, `<tmp>/` and `~/`."""
    for path, replacement in _prefixes():
        text = text.replace(path, replacement)
    return _HOME.sub("~/", _SITE.sub("", text))
