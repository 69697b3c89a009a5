"""`load_image` over many files, results in input order: in this process, or in a pool of worker
processes that hand the pixels back through shared memory.

Pickling each 196 kB image through a pipe costs the workers and the writing process more CPU than
writing it to shared memory once, so the pool and the parent share a block of `slots` images
(created before the workers are forked). Task k writes its images into slot group k mod `window`,
and at most `window` tasks are in flight: task k + window is only submitted after the caller is
done with task k's images, so a slot is never overwritten while it is being read. That also bounds
memory however slow the writing side is (Pool.imap would queue every task at once).
"""

from __future__ import annotations

import ctypes
import sys
from collections import deque

import numpy as np

from .preprocess import SkipImage, load_image, load_images

_worker_slots = None  # in a worker: the shared (slots, size, size, 3) uint8 array


def _attach(shared, slots: int, size: int) -> None:
    global _worker_slots
    _worker_slots = np.frombuffer(shared, dtype=np.uint8).reshape(slots, size, size, 3)


def _load_into_slots(paths, size: int, first_slot: int) -> list:
    """In a worker: decode `paths` into consecutive slots; None where it worked, else the skip reason."""
    reasons = []
    for offset, path in enumerate(paths):
        try:
            _worker_slots[first_slot + offset] = load_image(path, size)
            reasons.append(None)
        except SkipImage as exc:
            reasons.append(exc.reason)
    return reasons


class Decoder:
    """`decoder.map(path_groups)` yields, per group of at most `group_size` paths, a list with the
    uint8 (size, size, 3) image or the skip reason (a str) of each path. With workers > 1 the
    images are views of shared memory, valid until the next group is requested: copy what you keep."""

    def __init__(self, workers: int, size: int, group_size: int):
        self.size, self.group_size = size, group_size
        self.pool = None
        if workers > 1:
            import multiprocessing

            # fork: no pickling of the shared block, and fast start. The pool is made before any
            # progress bar thread or HDF5 file exists, so the fork copies neither.
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
            self.window = 2 * workers
            slots = self.window * group_size
            shared = context.RawArray(ctypes.c_uint8, slots * size * size * 3)
            self.slots = np.frombuffer(shared, dtype=np.uint8).reshape(slots, size, size, 3)
            self.pool = context.Pool(workers, initializer=_attach, initargs=(shared, slots, size))

    def map(self, path_groups):
        if self.pool is None:
            yield from (load_images(paths, self.size) for paths in path_groups)
            return
        groups = iter(path_groups)
        pending = deque()
        submitted = 0

        def submit():
            nonlocal submitted
            for paths in groups:
                if len(paths) > self.group_size:
                    raise ValueError(f"a group holds {len(paths)} paths, more than group_size {self.group_size}")
                first = (submitted % self.window) * self.group_size
                pending.append((first, self.pool.apply_async(_load_into_slots, (paths, self.size, first))))
                submitted += 1
                return

        for _ in range(self.window):
            submit()
        while pending:
            first, result = pending.popleft()
            reasons = result.get()
            yield [self.slots[first + i] if reason is None else reason for i, reason in enumerate(reasons)]
            submit()  # only now: the caller is done with this group's slots

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
