"""Four consecutive elements of a 1-D array in one 128-bit load, and 32-bit unsigned division.

`load4(array, i)` returns (array[i], array[i+1], array[i+2], array[i+3]) through one LLVM load of a
<4 x T> vector, which NVVM/ptxas turn into LDS.128 on a shared array and LDG.E.128 on a global
one: a quarter of the load instructions of four scalar reads. The caller guarantees that i is a
multiple of 4 and that the array's data is 16-byte aligned (shared arrays declared with
`alignment=SHARED_ALIGNMENT`, device allocations are 256-byte aligned); a misaligned vector load
faults on the GPU. The CUDA simulator runs kernels as Python, where an LLVM intrinsic cannot run:
there `load4` is the four scalar reads.

`udiv(a, b)`: Numba types arithmetic on int32 values as 64-bit, so `a // b` compiles to a call of
the 64-bit division routine (about 80 instructions); on unsigned 32-bit operands LLVM keeps the
division 32-bit, which ptxas inlines. For non-negative int32 a and positive b.
"""

from llvmlite import ir
from numba import config, cuda, int32, types, uint32
from numba.extending import intrinsic

SHARED_ALIGNMENT = None if config.ENABLE_CUDASIM else 16  # the simulator rejects any alignment


if config.ENABLE_CUDASIM:

    def load4(array, i):
        return array[i], array[i + 1], array[i + 2], array[i + 3]

else:

    @intrinsic
    def load4(typingctx, array, index):
        if not isinstance(array, types.Array) or array.ndim != 1 or not isinstance(index, types.Integer):
            return None
        signature = types.UniTuple(array.dtype, 4)(array, index)

        def codegen(context, builder, sig, args):
            array_type, _ = sig.args
            array_value = context.make_array(array_type)(context, builder, args[0])
            first = builder.gep(array_value.data, [args[1]], inbounds=True)
            vector_type = ir.VectorType(context.get_value_type(array_type.dtype), 4)
            vector = builder.load(builder.bitcast(first, vector_type.as_pointer()), align=16)
            lanes = [builder.extract_element(vector, ir.Constant(ir.IntType(32), lane)) for lane in range(4)]
            return context.make_tuple(builder, sig.return_type, lanes)

        return signature, codegen


@cuda.jit(device=True, inline=True)
def udiv(a, b):
    """a // b for a >= 0, b > 0, as int32 through 32-bit unsigned division."""
    return int32(uint32(a) // uint32(b))
