"""What one kernel's machine code issues, counted from its SASS listing (`disasm.Listing`).

Instruction classes (per thread, i.e. per warp-instruction issued):

    FFMA     fused multiply-add: the useful work of a matrix product
    LDS.32 / LDS.64 / LDS.128   shared-memory loads by width in bits (LDS.128 reads four floats)
    LDG      global-memory loads (LDG, LD, LDGSTS)
    STS      shared-memory stores
    INT      integer ALU (IMAD, IADD3, LOP3, SHF, LEA, ISETP, SEL, MOV, ... and their uniform U*
             forms)
    BRANCH   BRA, BSSY/BSYNC convergence, EXIT, RET, ...
    BARRIER  BAR, DEPBAR, MEMBAR
    CALL     a CALL and every instruction of the subroutine it calls
    OTHER    everything else (FADD/FMUL/MUFU, S2R, LDC, STG, LDL/STL, ...)

The K tile of a matrix kernel, counted exactly so:

  1. the hot loop is the loop (a backward BRA) holding the most FFMAs, the innermost on a tie;
  2. the K-tile loop is the innermost loop around it (itself included) that holds a BAR: one
     iteration is what a block does between two shared-memory hand-offs. A kernel with no
     barrier around its hot loop has the hot loop as its K-tile loop;
  3. one K tile is every instruction of the K-tile loop's body once, except that instructions
     inside loops nested in it count `trips` times, `trips` being solved from the FFMAs one thread
     must issue per K tile (TILE_M * TILE_N * TILE_K / THREADS for refnet's tiled kernels):
     direct FFMAs + trips * nested FFMAs = that number;
  4. a CALL counts 1 plus the length of the subroutine it calls (its instructions up to its last
     RET, calls inside it expanded the same way), times the weight of the CALL's position.

Both sides of every branch are counted (a static count: a conditional CALL as if taken).
The instructions outside the K-tile loop (prologue, epilogue) are counted once each, calls
expanded, loops there once: what `outside` returns, spread by the caller over the K tiles a
thread runs.
"""

import re
from dataclasses import dataclass

CLASSES = ("FFMA", "LDS.32", "LDS.64", "LDS.128", "LDG", "STS", "INT", "BRANCH", "BARRIER", "CALL", "OTHER")

_INT = {"IMAD", "IADD3", "IADD", "IADD32I", "LOP3", "LOP", "LOP32I", "SHF", "SHL", "SHR", "LEA", "ISETP", "IMNMX",
        "VIMNMX", "IABS", "SEL", "MOV", "MOV32I", "PRMT", "SGXT", "BMSK", "FLO", "POPC", "BREV", "VIADD", "IDP",
        "IMUL", "ICMP", "PLOP3", "P2R", "R2P", "LEPC"}
_BRANCH = {"BRA", "BRX", "JMP", "JMX", "BSSY", "BSYNC", "BREAK", "EXIT", "RET", "WARPSYNC", "BPT", "KILL", "YIELD"}
_BARRIER = {"BAR", "DEPBAR", "MEMBAR", "ERRBAR", "CCTL"}
_LDG = {"LDG", "LD", "LDGSTS"}
# Software 64-bit integer division / remainder: __cuda_sm20_div_s64, ..._rem_u64, and the
# $__internal_N_ wrappers that name them.
DIV64 = re.compile(r"(div|rem)_[su]64")


def instruction_class(ins):
    base = ins.base
    if base.startswith("FFMA"):
        return "FFMA"
    if base == "LDS":
        mods = ins.opcode.split(".")[1:]
        return "LDS.128" if "128" in mods else "LDS.64" if "64" in mods else "LDS.32"
    if base in _LDG:
        return "LDG"
    if base == "STS":
        return "STS"
    if base == "CALL":
        return "CALL"
    if base in _BRANCH:
        return "BRANCH"
    if base in _BARRIER:
        return "BARRIER"
    if base in _INT or (base.startswith("U") and base[1:] in _INT):
        return "INT"
    return "OTHER"


def _empty():
    return dict.fromkeys(CLASSES, 0.0)


def _add(total, counts, weight=1.0):
    for k, v in counts.items():
        total[k] += v * weight
    return total


def subroutine_length(listing, name, _seen=()):
    """Instructions one call of subroutine `name` issues: its body, calls in it expanded."""
    if name in _seen:
        return 0
    total = 0
    for ins in listing.function(name).body():
        total += 1
        if ins.base == "CALL" and ins.target:
            total += subroutine_length(listing, ins.target, _seen + (name,))
    return total


def _count(listing, instructions, weight_of):
    counts = _empty()
    for ins in instructions:
        weight = weight_of(ins)
        kind = instruction_class(ins)
        counts[kind] += weight
        if kind == "CALL" and ins.target:
            counts["CALL"] += weight * subroutine_length(listing, ins.target)
    return counts


def _ffma(instructions):
    return sum(1 for ins in instructions if ins.base.startswith("FFMA"))


@dataclass
class KTile:
    loop: object  # disasm.Loop: the K-tile loop
    trips: float  # how often its nested loops run per K tile
    counts: dict  # class -> instructions per thread per K tile

    @property
    def total(self):
        return sum(self.counts.values())

    @property
    def ffma_share(self):
        return self.counts["FFMA"] / self.total if self.total else 0.0


def k_tile_loop(listing):
    """The K-tile loop (rules 1-2 above), or None when no loop issues an FFMA."""
    loops = listing.loops()
    with_ffma = [loop for loop in loops if _ffma(loop.instructions)]
    if not with_ffma:
        return None
    hot = max(with_ffma, key=lambda loop: (_ffma(loop.instructions), -len(loop.instructions)))
    around = sorted((loop for loop in loops if loop == hot or loop.contains(hot)), key=lambda loop: len(loop.instructions))
    return next((loop for loop in around if any(i.base == "BAR" for i in loop.instructions)), hot)


def k_tile(listing, ffma_per_tile):
    """Counts per K tile (rules 3-4), `ffma_per_tile` FFMAs per thread per K tile."""
    loop = k_tile_loop(listing)
    if loop is None:
        return None
    nested = [inner for inner in listing.loops() if loop.contains(inner)]
    nested_offsets = {ins.offset for inner in nested for ins in inner.instructions}
    nested_ffma = sum(1 for ins in loop.instructions if ins.offset in nested_offsets and ins.base.startswith("FFMA"))
    direct_ffma = _ffma(loop.instructions) - nested_ffma
    trips = (ffma_per_tile - direct_ffma) / nested_ffma if nested_ffma else 1.0
    counts = _count(listing, loop.instructions, lambda ins: trips if ins.offset in nested_offsets else 1.0)
    return KTile(loop, trips, counts)


def outside(listing, loop):
    """Counts of the entry's instructions outside `loop`, each once (calls expanded)."""
    inside = {ins.offset for ins in loop.instructions} if loop else set()
    return _count(listing, [i for i in listing.entry.body() if i.offset not in inside], lambda ins: 1.0)


def per_thread(listing, trips):
    """A whole kernel's instructions per thread when every loop runs `trips` times (a grid-stride
    loop over `trips` elements); instructions outside loops once."""
    in_loop = {ins.offset for loop in listing.loops() for ins in loop.instructions}
    return _count(listing, listing.entry.body(), lambda ins: trips if ins.offset in in_loop else 1.0)


def calls(listing):
    """{subroutine name: CALL instructions naming it} in the entry function."""
    found = {}
    for ins in listing.entry.body():
        if ins.base == "CALL":
            found[ins.target] = found.get(ins.target, 0) + 1
    return found


def div64_calls(listing):
    return sum(n for name, n in calls(listing).items() if DIV64.search(name))


@dataclass(frozen=True)
class LocalMemory:
    instructions: int  # LDL + STL in the entry function
    in_loop: int  # of which inside a loop


def local_memory(listing):
    in_loop = {ins.offset for loop in listing.loops() for ins in loop.instructions}
    local = [ins for ins in listing.entry.body() if ins.base in ("LDL", "STL")]
    return LocalMemory(len(local), sum(1 for ins in local if ins.offset in in_loop))
