"""Sixteen float32 lanes as one value in @njit code: the vocabulary of the GEMM micro-kernel, the
stride-2 max-pool and LRN's power, in the manner of C intrinsics.

    vzero()                     -> (0, ..., 0)
    vsplat(x)                   -> (x, ..., x)                          x a float32
    vload(arr, i)               -> (arr[i], ..., arr[i + 15])           arr a 1-D float32 array
    vbroadcast(arr, i)          -> (arr[i], ..., arr[i])
    vstore(arr, i, v)           :  arr[i + l] = v[l] for l < 16; into an int32 array, v[l]
                                   converted to int32 (exact for whole numbers < 2**24)
    vfma(x, y, z)               -> x * y + z lane by lane, one rounding (fused)
    vmul(x, y)                  -> x * y lane by lane
    vadd(x, y)                  -> x + y lane by lane
    vrsqrt_estimate(x)          -> about 1 / sqrt(x) lane by lane: x86's vrsqrtps where the target
                                   has AVX2 (relative error <= 1.5 * 2**-12; the bits differ
                                   between Intel and AMD), the exact 1 / sqrt(x) elsewhere; a
                                   starting point for Newton steps
    vfirst(n)                   -> a mask16: lanes l < n (n <= 0: none; n >= 16: all)
    vload_masked(arr, i, m)     -> arr[i + l] in the lanes of mask m, 0 in the others; nothing
                                   outside m is read (no fault at an array's end)
    vstore_masked(arr, i, v, m) :  arr[i + l] = v[l] in the lanes of mask m only; into an int32
                                   array, v[l] converted to int32 (exact for whole numbers < 2**24)
    vevens(lo, hi)              -> (lo[0], lo[2], ..., lo[14], hi[0], hi[2], ..., hi[14]): every
                                   other value of 32, for stride-2 windows
    vodds(lo, hi)               -> (lo[1], lo[3], ..., lo[15], hi[1], hi[3], ..., hi[15])
    vramp_halves(a, b, step)    -> (a, a + step, ..., a + 7*step, b, b + step, ..., b + 7*step)
    vwins(v, best)              -> a mask16, lane by lane: does v replace the running maximum best?
                                   (v > best, or v is NaN; never once best is NaN: max-pooling's rule)
    vselect(mask, x, y)         -> x where mask, else y
    vtranspose16(src, i, sp, dst, o, dp)
                                :  dst[o + t*dp + r] = src[i + r*sp + t] for r, t < 16: a 16 x 16
                                   block copied transposed (16 loads, 64 two-vector shuffles, 16
                                   stores)
    prefetch(arr, i)            :  ask the caches for the line holding arr[i] (a hint: no fault,
                                   no effect on results)
A `float32x16` is an LLVM <16 x float>: one AVX-512 register (two AVX2 registers, four SSE ones:
LLVM splits it where the machine is narrower), so a tile of c held in such values across a whole
K loop stays in registers. Numba itself has no such type: written with scalars or arrays, the same
tile is compiled to scalar FMAs, or to loads and stores of c on every step. On the FC layers' GEMMs
(bench/results/cpu.md) the best scalar-written forms reached 112-157 GFLOP/s, 0.74-0.98x numpy's
matmul; the register tile 140-170 GFLOP/s, 0.90-1.16x.

No bounds checks, as with C intrinsics: callers index inside their arrays (the GEMM's packed
panels are padded to whole vectors; the max-pool's loads are masked at the end of each row).
Loads and stores assume 4-byte alignment only.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

from .machine import AVX2

LANES = 16
HALF = LANES // 2
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Float32x16(types.Type):
    def __init__(self):
        super().__init__(name="float32x16")


class Mask16(types.Type):
    def __init__(self):
        super().__init__(name="mask16")


float32x16 = Float32x16()
mask16 = Mask16()
_INDICES = ir.VectorType(ir.IntType(32), LANES)
_MASK = ir.VectorType(ir.IntType(1), LANES)


@register_model(Float32x16)
class _Float32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


@register_model(Mask16)
class _Mask16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _MASK)


def _is_float32_vector_array(arr):
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.float32


def _lanes_at(context, builder, arr_type, arr, index, index_type, lanes_type=_VECTOR):
    """Pointer to arr[index] seen as a pointer to 16 lanes (of float32, or of lanes_type)."""
    data = context.make_array(arr_type)(context, builder, arr).data
    offset = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(data, [offset]), lanes_type.as_pointer())


def _splat(builder, value, vector_type):
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    everywhere = ir.Constant(_INDICES, [0] * LANES)
    return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined), everywhere)


def _first_lanes(context, builder, count, count_type):
    """The mask of lanes l < count."""
    n = context.cast(builder, count, count_type, types.int64)
    n = builder.select(builder.icmp_signed(">", n, ir.Constant(ir.IntType(64), LANES)), ir.Constant(ir.IntType(64), LANES), n)
    n = builder.trunc(n, ir.IntType(32))
    return builder.icmp_signed("<", ir.Constant(_INDICES, list(range(LANES))), _splat(builder, n, _INDICES))


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
        return _splat(builder, args[0], _VECTOR)

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
        return _splat(builder, builder.load(builder.gep(data, [offset]), align=4), _VECTOR)

    return float32x16(arr, index), codegen


@intrinsic
def vstore(typingctx, arr, index, vector):
    as_int = isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int32
    if not ((_is_float32_vector_array(arr) or as_int) and isinstance(index, types.Integer)
            and isinstance(vector, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        lanes_type = _INDICES if as_int else _VECTOR
        pointer = _lanes_at(context, builder, signature.args[0], args[0], args[1], signature.args[1], lanes_type)
        value = builder.fptosi(args[2], _INDICES) if as_int else args[2]
        builder.store(value, pointer, align=4)
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


@intrinsic
def vadd(typingctx, x, y):
    if not all(isinstance(t, Float32x16) for t in (x, y)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])

    return float32x16(x, y), codegen


_HALF_VECTOR = ir.VectorType(ir.FloatType(), HALF)


@intrinsic
def vrsqrt_estimate(typingctx, x):
    if not isinstance(x, Float32x16):
        return None

    def codegen(context, builder, signature, args):
        (v,) = args
        if not AVX2:
            sqrt = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), "llvm.sqrt.v16f32")
            return builder.fdiv(ir.Constant(_VECTOR, [1.0] * LANES), builder.call(sqrt, [v]))
        # AVX's estimate takes 8 lanes: the two halves, each through one vrsqrtps.
        estimate = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_HALF_VECTOR, [_HALF_VECTOR]), "llvm.x86.avx.rsqrt.ps.256"
        )
        lo, hi = (
            builder.call(estimate, [builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), HALF), lanes))])
            for lanes in (list(range(HALF)), list(range(HALF, LANES)))
        )
        return builder.shuffle_vector(lo, hi, ir.Constant(_INDICES, list(range(LANES))))

    return float32x16(x), codegen


@intrinsic
def vramp_halves(typingctx, lo_start, hi_start, step):
    if not (lo_start == types.float32 and hi_start == types.float32 and step == types.float32):
        return None

    def codegen(context, builder, signature, args):
        lo, hi = _splat(builder, args[0], _VECTOR), _splat(builder, args[1], _VECTOR)
        starts = builder.shuffle_vector(lo, hi, ir.Constant(_INDICES, list(range(HALF)) + list(range(LANES, LANES + HALF))))
        lanes = ir.Constant(_VECTOR, [float(lane % HALF) for lane in range(LANES)])
        return builder.fadd(starts, builder.fmul(lanes, _splat(builder, args[2], _VECTOR)))

    return float32x16(lo_start, hi_start, step), codegen


@intrinsic
def vfirst(typingctx, count):
    if not isinstance(count, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return _first_lanes(context, builder, args[0], signature.args[0])

    return mask16(count), codegen


@intrinsic
def vload_masked(typingctx, arr, index, mask):
    if not (_is_float32_vector_array(arr) and isinstance(index, types.Integer) and isinstance(mask, Mask16)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _lanes_at(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR.as_pointer(), ir.IntType(32), _MASK, _VECTOR]),
            "llvm.masked.load.v16f32.p0")
        return builder.call(load, [pointer, ir.Constant(ir.IntType(32), 4), args[2], ir.Constant(_VECTOR, [0.0] * LANES)])

    return float32x16(arr, index, mask), codegen


@intrinsic
def vstore_masked(typingctx, arr, index, vector, mask):
    as_int = isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int32
    if not ((_is_float32_vector_array(arr) or as_int) and isinstance(index, types.Integer)
            and isinstance(vector, Float32x16) and isinstance(mask, Mask16)):
        return None

    def codegen(context, builder, signature, args):
        lanes_type = _INDICES if as_int else _VECTOR
        pointer = _lanes_at(context, builder, signature.args[0], args[0], args[1], signature.args[1], lanes_type)
        value = builder.fptosi(args[2], _INDICES) if as_int else args[2]
        name = "llvm.masked.store.v16i32.p0" if as_int else "llvm.masked.store.v16f32.p0"
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [lanes_type, lanes_type.as_pointer(), ir.IntType(32), _MASK]),
            name)
        builder.call(store, [value, pointer, ir.Constant(ir.IntType(32), 4), args[3]])
        return context.get_dummy_value()

    return types.none(arr, index, vector, mask), codegen


@intrinsic
def vevens(typingctx, lo, hi):
    if not (isinstance(lo, Float32x16) and isinstance(hi, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        return builder.shuffle_vector(args[0], args[1], ir.Constant(_INDICES, list(range(0, 2 * LANES, 2))))

    return float32x16(lo, hi), codegen


@intrinsic
def vodds(typingctx, lo, hi):
    if not (isinstance(lo, Float32x16) and isinstance(hi, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        return builder.shuffle_vector(args[0], args[1], ir.Constant(_INDICES, list(range(1, 2 * LANES, 2))))

    return float32x16(lo, hi), codegen


@intrinsic
def vwins(typingctx, v, best):
    if not (isinstance(v, Float32x16) and isinstance(best, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        v, best = args
        # "greater, or unordered" is v > best or either is NaN; and best not NaN leaves v's NaN.
        greater_or_nan = builder.fcmp_unordered(">", v, best)
        return builder.and_(greater_or_nan, builder.fcmp_ordered("ord", best, best))

    return mask16(v, best), codegen


@intrinsic
def vselect(typingctx, mask, x, y):
    if not (isinstance(mask, Mask16) and isinstance(x, Float32x16) and isinstance(y, Float32x16)):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return float32x16(mask, x, y), codegen


@intrinsic
def prefetch(typingctx, arr, index):
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        offset = context.cast(builder, args[1], signature.args[1], types.intp)
        address = builder.bitcast(builder.gep(data, [offset]), ir.IntType(8).as_pointer())
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()] + [ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        # read, keep in all levels (locality 3), data cache
        builder.call(hint, [address] + [ir.Constant(ir.IntType(32), k) for k in (0, 3, 1)])
        return context.get_dummy_value()

    return types.none(arr, index), codegen


def _transpose_stage(builder, rows, h):
    """Swap the off-diagonal h x h blocks inside every 2h x 2h block of a 16 x 16 matrix held as
    16 row vectors; after stages h = 8, 4, 2, 1 the rows hold the columns."""
    out = list(rows)
    for i in range(LANES):
        if i & h:
            continue
        upper = [c if not c & h else LANES + c - h for c in range(LANES)]
        lower = [c + h if not c & h else LANES + c for c in range(LANES)]
        out[i] = builder.shuffle_vector(rows[i], rows[i + h], ir.Constant(_INDICES, upper))
        out[i + h] = builder.shuffle_vector(rows[i], rows[i + h], ir.Constant(_INDICES, lower))
    return out


@intrinsic
def vtranspose16(typingctx, src, index, src_pitch, dst, dst_index, dst_pitch):
    if not (_is_float32_vector_array(src) and _is_float32_vector_array(dst)
            and all(isinstance(t, types.Integer) for t in (index, src_pitch, dst_index, dst_pitch))):
        return None

    def codegen(context, builder, signature, args):
        src_type, index_type, pitch_type, dst_type, dst_index_type, dst_pitch_type = signature.args
        src_arr, start, pitch, dst_arr, dst_start, dst_step = args
        start = context.cast(builder, start, index_type, types.intp)
        pitch = context.cast(builder, pitch, pitch_type, types.intp)
        dst_start = context.cast(builder, dst_start, dst_index_type, types.intp)
        dst_step = context.cast(builder, dst_step, dst_pitch_type, types.intp)
        rows = []
        for r in range(LANES):
            at = builder.add(start, builder.mul(pitch, ir.Constant(pitch.type, r)))
            rows.append(builder.load(_lanes_at(context, builder, src_type, src_arr, at, types.intp), align=4))
        for h in (8, 4, 2, 1):
            rows = _transpose_stage(builder, rows, h)
        for t in range(LANES):
            at = builder.add(dst_start, builder.mul(dst_step, ir.Constant(dst_step.type, t)))
            builder.store(rows[t], _lanes_at(context, builder, dst_type, dst_arr, at, types.intp), align=4)
        return context.get_dummy_value()

    return types.none(src, index, src_pitch, dst, dst_index, dst_pitch), codegen
