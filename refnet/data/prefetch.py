"""Run a generator in a background thread, `depth` items ahead of its consumer.

The reader's batches come from h5py reads (which hold h5py's lock) and an @njit(nogil=True) kernel
(which releases the GIL), so one thread preparing the next batches overlaps the consumer's compute.
An exception in the producer is re-raised in the consumer at the position it happened; closing the
consumer early (break, del, gen.close()) stops the producer and joins its thread.
"""

import queue
import threading

_DONE = object()
_POLL_SECONDS = 0.1


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def prefetch(items, depth=2):
    """Yield what the iterable `items` yields, produced by a background thread `depth` items ahead."""
    if depth < 1:
        raise ValueError(f"depth: expected an integer >= 1, got {depth}")
    ready = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="refnet-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
