"""Tasks handed out one at a time to whichever thread is free, for parallel loops whose threads
may not run at the same speed (a core shared with other work, a virtual CPU whose host is busy).

    claim(counter) -> the next task number: counter[0] before an atomic increment by one

prange gives each thread an equal share of a loop's iterations up front, so a thread slowed down
holds up the whole call while the others wait. Instead a kernel makes
`counter = np.zeros(1, np.int64)` and runs

    for _ in prange(tasks):
        t = claim(counter)
        while t < tasks:
            ...task t...
            t = claim(counter)

The first iteration on each thread serves tasks until none are left, the thread's later
iterations find none. Which thread computes a task then depends on timing, but each task is
computed whole by one thread in a fixed order, so results still do not depend on the threads.

Read the counter only through claim: Numba's parfor pass does not see claim's write, and took
counter[0] after such a loop for the zero the array was made with (tests/test_tasks.py).
"""

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def claim(typingctx, counter):
    if not (isinstance(counter, types.Array) and counter.ndim == 1 and counter.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen
