"""Running one step on a second thread while the caller goes on.

Worth it only for work that releases the GIL: numba kernels compiled with ``nogil=True``
and most OpenCV and numpy calls.  A thread per call (about 0.1 ms), not a pool, because
core keeps no state between calls.
"""
from __future__ import annotations

import threading


class Beside:
    """``fn(*args)`` started on its own thread; ``result()`` waits for it and returns its
    value or raises its exception in the caller."""

    def __init__(self, fn, *args):
        self._value = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="core-beside", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
