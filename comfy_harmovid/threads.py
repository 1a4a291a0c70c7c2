"""A chain of steps, each in a thread of its own, passing items on through bounded queues.

Video work is a chain (decode -> process -> encode) whose steps spend their time in libraries that
release the GIL (PyAV, OpenCV, numpy, torch), so running each step in its own thread overlaps them
on several cores. Each queue holds at most ``depth`` items, so memory stays bounded however long the
input; each step sees the items in order, so a step that keeps state from one item to the next
(a temporal filter) works as it would in a plain loop.
"""

import queue
import threading
from typing import Callable, Iterable, Iterator, Sequence

_END = object()  # passed down the chain after the last item
_WAIT = 0.1  # seconds between checks for a failure elsewhere while a queue is full or empty


class _Failed(Exception):
    """Raised in a thread whose neighbour has failed, to unwind it quietly."""


class _Chain:
    def __init__(self):
        self.failure = None  # the first exception raised by any step
        self.stop = threading.Event()

    def fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self.stop.set()

    def put(self, channel: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Failed
            try:
                channel.put(item, timeout=_WAIT)
                return
            except queue.Full:
                continue

    def get(self, channel: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Failed
            try:
                return channel.get(timeout=_WAIT)
            except queue.Empty:
                continue


def chained(items: Iterable, steps: Sequence[Callable], *, depth: int = 1, thread_setup: Callable = None) -> Iterator:
    """``steps[-1](... steps[0](item))`` for each of ``items``, in order, as a generator.

    Iterating ``items`` and every step run in threads of their own (``thread_setup()``, when given,
    runs first in each); the caller's thread receives the results. An exception in any thread stops
    them all and is raised in the caller; closing the generator early stops them too.
    """
    chain = _Chain()
    channels = [queue.Queue(maxsize=depth) for _ in range(len(steps) + 1)]

    def produce():
        for item in items:
            chain.put(channels[0], item)
        chain.put(channels[0], _END)

    def work(step, source, target):
        def run():
            while True:
                item = chain.get(source)
                if item is _END:
                    chain.put(target, _END)
                    return
                chain.put(target, step(item))
        return run

    def guarded(body):
        def thread_main():
            try:
                if thread_setup is not None:
                    thread_setup()
                body()
            except _Failed:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                chain.fail(error)
        return thread_main

    bodies = [produce] + [work(step, channels[n], channels[n + 1]) for n, step in enumerate(steps)]
    threads = [threading.Thread(target=guarded(body), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                item = chain.get(channels[-1])
            except _Failed:
                raise chain.failure from None
            if item is _END:
                return
            yield item
    finally:
        chain.stop.set()
        for thread in threads:
            thread.join()
