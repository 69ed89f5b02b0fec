"""Full garbage collections that do not stall every request.

CPython's cyclic collector scans the whole old generation on each full collection, on the
thread that allocates, so on the event loop. The server's long-lived heap (search registry,
terminology, models: about 100,000 tracked objects) would be rescanned each time a large
request (a 10,000-entry transaction is millions of objects) grows the heap, for hundreds of
milliseconds a time. After start-up that heap is frozen out of the collector (`gc.freeze`;
it is never garbage), and full collections come ten times less often; young garbage is
still collected as usual, and plain reference counting frees everything without cycles.
"""

from __future__ import annotations

import gc

FULL_COLLECTION_EVERY = 100  # gen-1 collections between full ones (CPython's default: 10)


def settle_after_startup() -> None:
    """Collect once, freeze what start-up built, and space out full collections."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
