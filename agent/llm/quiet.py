"""Keep library chatter out of our commands' output: they print their own progress."""
from __future__ import annotations

import os
import warnings


def quiet_libraries() -> None:
    """No weight-loading progress bars, advisory warnings or deprecation notes from
    transformers around our output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
