"""Sixteen float32 lanes as one value in @njit code: the vocabulary of the GEMM micro-kernel.

    vzero()              -> (0, ..., 0)
    vsplat(x)            -> (x, ..., x)                       x a float32
    vload(arr, i)        -> (arr[i], ..., arr[i + 15])        arr a 1-D float32 array
    vbroadcast(arr, i)   -> (arr[i], ..., arr[i])
    vstore(arr, i, v)    :  arr[i + l] = v[l], l < 16
    vfma(x, y, z)        -> x * y + z, lane by lane, one rounding (fused)
    vmul(x, y)           -> x * y, lane by lane
A value of type `float32x16` is an LLVM <16 x float>: it lives in one AVX-512 register (two AVX2
registers, four SSE registers: LLVM splits it where the machine is narrower), so a tile of c held in
such values across a whole K loop stays in registers. Numba itself has no such type: written with
scalars or arrays, the same tile is compiled to scalar FMAs or to loads and stores of c on every
step (measured: 73-92 GFLOP/s on one core at best, against 140-160 with these).

As in C intrinsics there is no bounds check: callers index inside their arrays (the GEMM's packed
panels are padded to whole vectors). Loads and stores assume 4-byte alignment only.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Float32x16(types.Type):
    def __init__(self):
        super().__init__(name="float32x16")


float32x16 = Float32x16()


@register_model(Float32x16)
class _Float32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _is_float32_vector_array(arr):
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.float32


def _lanes_at(context, builder, arr_type, arr, index, index_type):
    """Pointer to arr[index] seen as a pointer to 16 lanes."""
    data = context.make_array(arr_type)(context, builder, arr).data
    offset = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(data, [offset]), _VECTOR.as_pointer())


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)

    return float32x16(), codegen


@intrinsic
def vsplat(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        lane0 = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        everywhere = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(lane0, ir.Constant(_VECTOR, ir.Undefined), everywhere)

    return float32x16(x), codegen


@intrinsic
def vload(typingctx, arr, index):
    if not (_is_float32_vector_array(arr) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _lanes_at(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load(pointer, align=4)

    return float32x16(arr, index), codegen


@intrinsic
def vbroadcast(typingctx, arr, index):
    # vsplat(arr[i]) would do, but Numba's indexing adds a negative-index check to every such load.
    if not (_is_float32_vector_array(arr) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        offset = context.cast(builder, args[1], signature.args[1], types.intp)
        value = builder.load(builder.gep(data, [offset]), align=4)
        lane0 = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        everywhere = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(lane0, ir.Constant(_VECTOR, ir.Undefined), everywhere)

    return float32x16(arr, index), codegen


@intrinsic
def vstore(typingctx, arr, index, vector):
    if not (_is_float32_vector_array(arr) and isinstance(index, types.Integer) and isinstance(vector, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _lanes_at(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        builder.store(args[2], pointer, align=4)
        return context.get_dummy_value()

    return types.none(arr, index, vector), codegen


@intrinsic
def vfma(typingctx, x, y, z):
    if not all(isinstance(t, Float32x16) for t in (x, y, z)):
        return None

    def codegen(context, builder, signature, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3),
                                             "llvm.fma.v16f32")
        return builder.call(fma, args)

    return float32x16(x, y, z), codegen


@intrinsic
def vmul(typingctx, x, y):
    if not all(isinstance(t, Float32x16) for t in (x, y)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fmul(args[0], args[1])

    return float32x16(x, y), codegen
