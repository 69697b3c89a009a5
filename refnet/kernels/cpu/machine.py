"""What this CPU reports (cache sizes, vector registers), and the blocking the CPU kernels take
from it. Read once, at import: the kernels freeze these numbers into their machine code, and
Numba's cache keeps one compilation per CPU model (its index key holds the CPU name and
features), so a cache written on one model is never loaded on another.

Register tile of the packed GEMM (gemm.py), c held in `simd.py`'s 16-lane vectors:
- 32 vector registers of 16 lanes (AVX-512): 8 rows x 32 columns, 16 registers of c, 2 of op(b),
  1 broadcast of op(a).
- 16 registers of 8 lanes (AVX2): a 16-lane vector takes two, so 8 x 32 would need 32 registers
  for c alone and spill inside the K loop; 4 rows x 16 columns takes 8 for c, 2 for op(b), 1 for
  the broadcast. (6 x 16, 15 registers, fits on paper, but LLVM's schedule of it kept a row of c on
  the stack; 4 x 16 and 5 x 16 measured 1.3-1.4x faster on the FC GEMMs, 4 x 16 the faster of the
  two: bench/results/cpu-amd-epyc-zen3.md, "FC weight gradient".)
Cache blocking: the K slice KC makes one KC x NR panel of op(b) fit in L1d; the MB x KC block of
op(a), re-read for every panel of op(b), a quarter of L2, and the KC x NB slice of op(b) another
quarter (256 columns on a 1 MiB L2, 128 on 512 KiB).

A change of blocking changes the order of the sums, so results are bit-identical run to run and
whatever the thread count on one CPU model, but not between models (README: a run resumed on
another CPU model continues, not bit for bit).
"""

import os

# Used when the machine does not say (no /sys, another OS): the dev machines' figures.
DEFAULT_CACHES = {"L1d": 32 * 1024, "L2": 512 * 1024, "L3": 32 * 1024 * 1024}
_SYS_CACHE = "/sys/devices/system/cpu/cpu0/cache"


def _parse_size(text):
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024, "G": 1024 ** 3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def cache_sizes(root=_SYS_CACHE):
    """Per-core data cache sizes in bytes, {"L1d", "L2", "L3"}, from /sys; the defaults where absent."""
    found = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, entry, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, entry, "size")) as f:
                size = _parse_size(f.read())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        found["L1d" if level == 1 else f"L{level}"] = size
    return {name: found.get(name, default) for name, default in DEFAULT_CACHES.items()}


def cpu_features(environ=os.environ):
    """(CPU name, has AVX-512F, has AVX2) as Numba compiles for them: the host's, or the target
    NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name (e.g. a portable cache built for "generic")."""
    import llvmlite.binding as llvm

    name = environ.get("NUMBA_CPU_NAME")
    if name and name != "host":
        wanted = environ.get("NUMBA_CPU_FEATURES", "")
        return name, "+avx512f" in wanted, "+avx2" in wanted
    features = llvm.get_host_cpu_features()
    return llvm.get_host_cpu_name(), bool(features.get("avx512f", False)), bool(features.get("avx2", False))


def _largest_power_of_two_at_most(n):
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def choose_blocking(caches, avx512, avx2=True):
    """The packed GEMM's tile and blocks for these caches and vector registers (see the module doc).
    Without AVX2 (SSE's 16 registers of 4 lanes, e.g. a "generic" target) the 4 x 16 tile spills;
    no smaller tile is kept for such targets."""
    lanes = 16
    if avx512:
        mr, nr_vectors, registers, register_lanes = 8, 2, 32, 16
    else:
        mr, nr_vectors, registers, register_lanes = 4, 1, 16, 8 if avx2 else 4
    nr = nr_vectors * lanes
    # KC capped at 256, the slice measured on Zen 4: longer slices were not measured.
    kc = min(256, max(64, _largest_power_of_two_at_most(caches["L1d"] // (nr * 4))))
    mb_rows = max(mr, min(256, caches["L2"] // 4 // (kc * 4)))
    mb = (mb_rows + mr - 1) // mr * mr
    # NB capped at 256, the block measured on Zen 4.
    nb = max(nr, min(256, _largest_power_of_two_at_most(caches["L2"] // 4 // (kc * 4))))
    return {
        "vector registers": f"{registers} x {register_lanes} float32",
        "MR": mr, "NR": nr, "KC": kc, "MB": mb, "NB": nb,
    }


CPU_NAME, AVX512, AVX2 = cpu_features()
CACHES = cache_sizes()
BLOCKING = choose_blocking(CACHES, AVX512, AVX2)
# The stride-2 max-pool prefetches the next plane into L1 for planes of up to this many values:
# the next plane then fits in an eighth of L1d beside the current one (1,024 on a 32 KB L1d).
PREFETCH_MAX_PLANE = CACHES["L1d"] // 32


def parameters_table():
    """Rows (name, value, why) of what was read and chosen, for `refnet bench`."""
    b = BLOCKING
    return [
        ("cpu (LLVM)", CPU_NAME, "the host, or NUMBA_CPU_NAME"),
        ("AVX-512 / AVX2", f"{'yes' if AVX512 else 'no'} / {'yes' if AVX2 else 'no'}",
         "LLVM host features, or NUMBA_CPU_FEATURES"),
        ("L1d / L2 / L3 per core", f"{CACHES['L1d'] // 1024} / {CACHES['L2'] // 1024} / {CACHES['L3'] // 1024} KiB",
         "/sys/devices/system/cpu/cpu0/cache"),
        ("vector registers", b["vector registers"], "AVX-512: 32 zmm; else 16 ymm"),
        ("GEMM register tile MR x NR", f"{b['MR']} x {b['NR']}", "c, op(b) and one broadcast in the registers"),
        ("GEMM K slice KC", b["KC"], "KC x NR panel of op(b) within L1d, at most 256"),
        ("GEMM row block MB", b["MB"], "MB x KC of op(a) in a quarter of L2"),
        ("GEMM column block NB", b["NB"], "KC x NB of op(b) in a quarter of L2, at most 256"),
        ("max-pool prefetch, plane values", PREFETCH_MAX_PLANE, "L1d / 32 bytes"),
    ]
