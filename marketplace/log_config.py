"""structlog set-up: JSON lines off a terminal, readable lines on one.

Workers bind `event_id`, `correlation_id`, `case_ref` and friends with contextvars, so every
line says which event it is about and one event can be followed through all workers.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO",
                      stream: object | None = None) -> None:
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=True)
    )
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # Looked up at each write: a test runner may swap sys.stderr and close the old one.
        logger_factory=(lambda *_: structlog.PrintLogger(file=stream)) if stream is not None  # type: ignore[arg-type]
        else (lambda *_: structlog.PrintLogger(file=sys.stderr)),
        cache_logger_on_first_use=False,
    )
    # FastStream and friends log through stdlib logging; keep them quiet unless asked.
    logging.basicConfig(level=max(numeric_level, logging.WARNING))
    for name in ("faststream", "faststream.access.redis", "apscheduler"):
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
