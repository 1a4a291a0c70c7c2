"""Steps chained in threads (comfy_harmovid.threads): order, state, errors and early stops."""

import threading
import time

import pytest

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.threads import chained


def test_items_come_out_in_order_through_every_step():
    seen = []

    def running_sum(item):  # a step with state, as a temporal filter has
        seen.append(item)
        return sum(seen)

    out = list(chained(range(50), [lambda v: v * 2, running_sum], depth=2))
    assert out == [sum(2 * k for k in range(n + 1)) for n in range(50)]


def test_each_step_runs_in_its_own_thread_and_overlaps_the_others():
    names = {}

    def step(name):
        def run(item):
            names.setdefault(name, set()).add(threading.get_ident())
            time.sleep(0.02)
            return item
        return run

    start = time.perf_counter()
    assert list(chained(range(10), [step("a"), step("b")])) == list(range(10))
    elapsed = time.perf_counter() - start
    assert all(len(idents) == 1 for idents in names.values()) and names["a"] != names["b"], names
    assert threading.get_ident() not in names["a"] | names["b"], "the steps must not run in the caller's thread"
    assert elapsed < 0.35, f"two 0.2 s steps took {elapsed:.2f} s: they did not overlap"


def test_an_error_in_any_thread_reaches_the_caller_and_stops_the_rest():
    def source():
        yield from range(3)
        raise HarmoVidError("the input ended early")

    with pytest.raises(HarmoVidError, match="ended early"):
        list(chained(source(), [lambda v: v]))

    def fail_on_two(item):
        if item == 2:
            raise ValueError("bad item 2")
        return item

    before = threading.active_count()
    with pytest.raises(ValueError, match="bad item 2"):
        list(chained(iter(range(1000)), [fail_on_two, lambda v: v]))
    assert threading.active_count() == before, "the chain's threads must have ended"


def test_closing_early_stops_the_threads():
    before = threading.active_count()
    chain = chained(iter(range(10**6)), [lambda v: v + 1])
    assert next(chain) == 1
    chain.close()
    assert threading.active_count() == before, "closing the generator must end its threads"


def test_thread_setup_runs_in_every_thread():
    local = threading.local()

    def setup():
        local.ready = True

    out = list(chained(range(3), [lambda v: getattr(local, "ready", False)], thread_setup=setup))
    assert out == [True, True, True]
