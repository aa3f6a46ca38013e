"""A wall-clock budget for one render, so a hostile image cannot hold a worker to its timeout.

On the main thread (where Lambda runs handlers) a one-shot ``SIGALRM`` interrupts the render
wherever Python runs next: Pillow feeds its decoders from a Python loop, a block of input at
a time, so the alarm lands inside a long decode, not after it. What the alarm cannot cut
short is one C call, such as a whole TIFF strip set decoded by libtiff or one resize; those
are bounded by the pixel and scan caps instead. Elsewhere (another thread, or a timer
already armed by someone else) the budget is checked between the render's stages.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from chalicelib.errors import ProcessingTimeout


class _Expired(BaseException):
    """Raised by the alarm. A BaseException, so that no decoder's ``except Exception`` and
    none of the engine's own handlers of decoder errors can mistake it for bad data."""


@dataclass
class Budget:
    """Seconds allowed from ``started`` (a ``time.monotonic`` reading); None: no limit."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        """Raise ``ProcessingTimeout`` if the budget is spent (the between-stages check)."""
        if self.seconds is not None and time.monotonic() - self.started >= self.seconds:
            raise self.timeout()

    def timeout(self) -> ProcessingTimeout:
        return ProcessingTimeout(
            f"Rendering the image took longer than its {self.seconds:g} s budget."
        )


@contextmanager
def deadline(seconds: float | None) -> Iterator[Budget]:
    """Run the ``with`` body within ``seconds`` of wall-clock time, or raise ProcessingTimeout.

    ``None`` sets no limit. The previous ``SIGALRM`` handler is restored on the way out.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"a time budget must be positive, got {seconds!r}")
    budget = Budget(seconds)
    if seconds is None or not _alarm_available():
        yield budget
        return
    alarm = _Alarm()
    previous_handler = signal.signal(signal.SIGALRM, alarm.fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield budget
    except _Expired:
        raise budget.timeout() from None
    finally:
        alarm.armed = False  # first: an alarm that fires from here on does nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)


class _Alarm:
    def __init__(self) -> None:
        self.armed = True

    def fire(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            raise _Expired


def _alarm_available() -> bool:
    """Signals can be handled only on the main thread, and only one real-time timer exists:
    one somebody else armed (a test runner's timeout, say) is left alone."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
