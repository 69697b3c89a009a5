"""Run a generator in a background thread, `depth` items ahead of its consumer.

The reader's batches come from h5py reads (which hold h5py's lock) and an @njit(nogil=True) kernel
(which releases the GIL), so one thread preparing the next batches overlaps the consumer's compute.
An exception in the producer is re-raised in the consumer at the position it happened; closing the
consumer early (break, del, gen.close()) stops the producer and joins its thread.
"""

import queue
import threading
import warnings

_DONE = object()
_POLL_SECONDS = 0.1


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def concurrent_kernels_are_safe():
    """True when Numba's threading layer lets two threads run parallel kernels at once (omp, tbb).
    The `workqueue` fallback (no OpenMP or TBB runtime found) aborts the process if they do."""
    import numba
    from numba.np.ufunc import parallel

    parallel._launch_threads()  # picks the layer now rather than at the first parallel kernel
    return numba.threading_layer() != "workqueue"


def prefetch(items, depth=2):
    """Yield what the iterable `items` yields, produced by a background thread `depth` items ahead
    (in the calling thread instead, with a warning, where the threading layer forbids that)."""
    if depth < 1:
        raise ValueError(f"depth: expected an integer >= 1, got {depth}")
    if not concurrent_kernels_are_safe():
        warnings.warn(
            "Numba's threading layer is 'workqueue', which cannot run kernels from two threads at once: "
            "batches are prepared without prefetching (install tbb, or an OpenMP runtime, to overlap them)",
            RuntimeWarning,
            stacklevel=2,
        )
        yield from items
        return
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


def depth_for(device):
    """Batches to prepare ahead for a network on `device`: 2 beside a GPU, whose kernels leave the
    CPU idle; none on the CPU, where the batch's kernel (parallel itself) would run beside the
    network's on the same cores and stall their parallel regions: at the demo's 67-px input on 2
    cores a step took 12-33 ms longer with prefetching than with the ~2 ms batch made in turn
    (bench/results/demo.md, "Prefetching on the CPU")."""
    return 2 if device == "cuda" else 0
