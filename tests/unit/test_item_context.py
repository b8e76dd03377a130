"""The item context is per thread: a worker's items run in a pool of threads, and a `limited`
function counts against the item (its rate limit and its shard's counters) of the thread that
calls it, never against another thread's."""

import threading

from datasetjob.sdk.context import Counters, ItemContext, limited


class CountingLimiter:
    def __init__(self):
        self.tokens = 0

    def acquire(self):
        self.tokens += 1


@limited
def upstream(x):
    return x


def test_limited_functions_take_tokens_of_their_own_threads_item():
    both_made = threading.Barrier(2, timeout=10)
    seen = {}

    def item(name: str, calls: int):
        limiter, counters = CountingLimiter(), Counters()
        ItemContext(
            item=name,
            item_id=name,
            shard="shard-00000",
            index=0,
            run_id="r",
            cache=None,
            counters=counters,
            limiter=limiter,
        )
        both_made.wait()  # both contexts exist before either calls upstream
        for n in range(calls):
            upstream(n)
        seen[name] = (limiter.tokens, counters.upstream_calls)

    threads = [threading.Thread(target=item, args=("a", 3)), threading.Thread(target=item, args=("b", 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": (3, 3), "b": (5, 5)}


def test_outside_an_item_limited_functions_just_run():
    out = []
    thread = threading.Thread(target=lambda: out.append(upstream(7)))
    thread.start()
    thread.join()
    assert out == [7]
