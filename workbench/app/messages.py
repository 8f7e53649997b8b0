"""Errors as messages on the page: a handler wrapper for the app's events."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from workbench.common.errors import WorkbenchError

log = logging.getLogger(__name__)


def readable(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler so that a WorkbenchError reaches the page as its message (and the log as one line), and any
    other error, a bug, as one line on the page and its traceback in the log (once: Gradio is told not to print it
    again). Gradio 6 heads its message boxes by their kind ("Error") and shows no title, so none is set."""

    @functools.wraps(handler)
    def wrapped(*args: Any) -> Any:
        try:
            return handler(*args)
        except WorkbenchError as error:
            log.warning("%s: %s", handler.__name__, error)
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:
            log.exception("handler %s failed", handler.__name__)
            raise gr.Error(f"unexpected error ({type(error).__name__}: {error}). The app keeps running; "
                           "try other inputs.", print_exception=False) from None

    return wrapped
