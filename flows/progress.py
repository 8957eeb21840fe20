"""Progress of long flows, for whoever listens (the CLI draws a bar; workers just log)."""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[int, int, str], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def report(done: int, total: int, message: str) -> None:
    for listener in list(_listeners):
        listener(done, total, message)
