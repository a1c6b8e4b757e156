"""One logging setup per process: the console keeps what a person acts on, a file the rest.

The console (stderr) gets RankLoop's own warnings and any error, each as one line naming the log
file. The file, <data_dir>/logs/rankloop.log, gets every record at the chosen level with its
traceback: Celery's and kombu's, transformers' (its own stderr handler is removed), and Python
warnings (FutureWarning, Celery's SecurityWarning for a worker run as root) through
logging.captureWarnings. The progress bars of transformers and huggingface_hub are off: a worker
would draw them into its log line by line.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from app.config import Settings, get_settings

LOG_FILE = Path("logs") / "rankloop.log"
OWN_LOGGERS = ("app", "worker", "bench", "rankloop")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"

_configured: Path | None = None


def log_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / LOG_FILE


class ConsoleLine(logging.Formatter):
    """`error: what failed (ValueError: why) - details in PATH`, never a traceback."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().strip().splitlines()
        text = lines[0] if lines else ""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ not in text:
            why = str(exc).strip().splitlines()
            text += f" ({type(exc).__name__}{': ' + why[0] if why else ''})"
        return f"{record.levelname.lower()}: {text} - details in {self.path}"


class ForPeople(logging.Filter):
    """Errors from anywhere, warnings from RankLoop's own code; libraries' warnings (kombu,
    transformers, Python warnings) stay in the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in OWN_LOGGERS


def quiet_progress_bars() -> None:
    """Before transformers or huggingface_hub is imported (they read the variable then), or
    after (their switches)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def route_transformers() -> None:
    """transformers prints its warnings to stderr with a handler of its own: send them to the
    root logger (the file) instead. Importing it costs a second or two, which a worker pays for
    its first model anyway."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()


def setup_logging(
    *,
    console: bool = True,
    level: int | str = logging.INFO,
    libraries: bool = False,
    settings: Settings | None = None,
) -> Path:
    """Configure this process's logging once (later calls change nothing); returns the file.

    console: one-line warnings and errors on stderr (the real one: a Celery worker may have
    swapped sys.stderr for a logger). libraries: route transformers' messages (processes that
    load models). Celery's own setup stands aside (worker/celery_app.py)."""
    global _configured
    if _configured is not None:
        return _configured
    quiet_progress_bars()
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root = logging.getLogger()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    to_file.setLevel(level)
    root.addHandler(to_file)
    if console:
        stream = sys.__stderr__ or sys.stderr
        to_console = logging.StreamHandler(stream)
        to_console.setLevel(logging.WARNING)
        to_console.addFilter(ForPeople())
        to_console.setFormatter(ConsoleLine(path))
        root.addHandler(to_console)
    root.setLevel(min(level, logging.WARNING))
    logging.captureWarnings(True)
    if libraries:
        route_transformers()
    _configured = path
    return path
