"""End a torchrun test script once its outputs are written, skipping the interpreter's teardown.

gloo can abort a process during that teardown (SIGABRT, "terminate called without an active
exception", no Python traceback) even after `destroy_process_group`: its worker threads may still hold
work objects whose destruction needs the GIL while the interpreter is being torn down (pytorch PR
#179291, abandoned). Seen once in CI on rank 1 of tests/test_distributed.py after the script had
finished its work. Reached only when `main` returned: an exception still exits non-zero.
"""

from __future__ import annotations

import os
import sys


def exit_now() -> None:
    """Flush what was printed and leave with status 0 (files are written and closed by then)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
