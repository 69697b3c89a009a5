"""The SASS reader and its counters (refnet.sass.disasm / counts / occupancy) on hand-written
listings in `nvdisasm -c` form, where every count is known."""

import pytest

from refnet.sass import counts
from refnet.sass.disasm import parse
from refnet.sass.occupancy import occupancy

# A matrix kernel in miniature: a K-tile loop (0x20-0x110) with two barriers and a 64-bit division
# call, around a 4-trip inner loop (0x40-0xc0) of 4 FFMAs; an epilogue loop (0x120-0x140) with a
# local load; a local store after it; the compiler's padding (a branch-to-self trap, NOPs); then
# the division subroutine (5 instructions up to its RET) and its padding.
KERNEL = """
	.target	sm_90
//--------------------- .text.kernel --------------------------
	.section	.text.kernel,"ax",@progbits
        .global         kernel
kernel:
.text.kernel:
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/                   IMAD R2, R0, 0x4, RZ ;
.L_x_0:
        /*0020*/                   STS [R2], R4 ;
        /*0030*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
.L_x_1:
        /*0040*/                   LDS.128 R8, [R2] ;
        /*0050*/                   LDS R12, [R2+0x200] ;
        /*0060*/                   FFMA R16, R8, R12, R16 ;
        /*0070*/                   FFMA R17, R9, R12, R17 ;
        /*0080*/                   FFMA R18, R10, R12, R18 ;
        /*0090*/                   FFMA R19, R11, R12, R19 ;
        /*00a0*/                   IADD3 R3, R3, 0x1, RZ ;
        /*00b0*/                   ISETP.NE.AND P0, PT, R3, 0x4, PT ;
        /*00c0*/               @P0 BRA `(.L_x_1) ;
        /*00d0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*00e0*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
        /*00f0*/                   LDG.E R4, desc[UR4][R6.64] ;
        /*0100*/                   ISETP.GT.AND P1, PT, R5, RZ, PT ;
        /*0110*/               @P1 BRA `(.L_x_0) ;
.L_x_2:
        /*0120*/                   LDL R20, [R1] ;
        /*0130*/                   STG.E desc[UR4][R6.64], R20 ;
        /*0140*/              @!P2 BRA `(.L_x_2) ;
        /*0150*/                   STL [R1], R20 ;
        /*0160*/                   EXIT ;
.L_x_3:
        /*0170*/                   BRA `(.L_x_3);
        /*0180*/                   NOP;
        .type           $__internal_0_$__cuda_sm20_div_s64,@function
$__internal_0_$__cuda_sm20_div_s64:
        /*0190*/                   IABS R8, R4 ;
        /*01a0*/                   I2F.U32.RP R9, R8 ;
        /*01b0*/                   MUFU.RCP R9, R9 ;
        /*01c0*/                   IMAD.HI.U32 R10, R9, R8, RZ ;
        /*01d0*/                   RET.REL.NODEC R2 `(kernel) ;
.L_x_4:
        /*01e0*/                   BRA `(.L_x_4);
        /*01f0*/                   NOP;
"""

# A grid-stride element-wise kernel: one loop, no FFMA, no barrier.
ELEMENTWISE = """
kernel2:
        /*0000*/                   S2R R0, SR_CTAID.X ;
.L_x_0:
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0020*/                   FMNMX R2, RZ, R2, !PT ;
        /*0030*/                   STG.E desc[UR4][R6.64], R2 ;
        /*0040*/                   UIADD3 UR4, UR4, 0x1, URZ ;
        /*0050*/               @P0 BRA `(.L_x_0) ;
        /*0060*/                   EXIT ;
"""


@pytest.fixture(scope="module")
def listing():
    return parse(KERNEL)


def test_functions_labels_and_padding(listing):
    assert [f.name for f in listing.functions] == ["kernel", "$__internal_0_$__cuda_sm20_div_s64"]
    assert len(listing.entry.instructions) == 25 and len(listing.entry.body()) == 23  # trap and NOP dropped
    assert listing.labels[".L_x_1"] == 0x40 and listing.labels["$__internal_0_$__cuda_sm20_div_s64"] == 0x190
    call = listing.entry.instructions[14]
    assert (call.opcode, call.target) == ("CALL.REL.NOINC", "$__internal_0_$__cuda_sm20_div_s64")
    branch = listing.entry.instructions[12]
    assert (branch.predicate, branch.base, branch.target) == ("@P0", "BRA", ".L_x_1")


def test_loops_are_backward_branches_and_never_the_trap(listing):
    assert [(loop.start, loop.end) for loop in listing.loops()] == [(0x20, 0x110), (0x40, 0xC0), (0x120, 0x140)]
    outer, inner, epilogue = listing.loops()
    assert outer.contains(inner) and not inner.contains(outer) and not outer.contains(epilogue)


def test_instruction_classes():
    text = "\n".join(f"        /*{i:04x}*/                   {op} ;" for i, op in enumerate(
        ["FFMA R1, R2, R3, R1", "LDS.U.128 R4, [R0]", "LDS.64 R4, [R0]", "LDS.U8 R4, [R0]", "LDGSTS.E [R0], desc[UR4][R2.64]",
         "UIADD3 UR4, UR4, 0x1, URZ", "ULDC UR4, c[0x0][0x0]", "LOP3.LUT R0, R1, 0xf, RZ, 0xc0, !PT", "BSSY B0, `(.L_x_1)",
         "BAR.SYNC 0x0", "MUFU.EX2 R0, R1", "STS.128 [R0], R4"]))  # fmt: skip
    classes = [counts.instruction_class(ins) for ins in parse("k:\n" + text).entry.instructions]
    assert classes == ["FFMA", "LDS.128", "LDS.64", "LDS.32", "LDG", "INT", "OTHER", "INT", "BRANCH", "BARRIER", "OTHER", "STS"]


def test_k_tile_loop_is_the_barrier_loop_around_the_ffma_loop(listing):
    assert counts.k_tile_loop(listing) == listing.loops()[0]
    assert counts.k_tile_loop(parse(ELEMENTWISE)) is None  # no FFMA in any loop


def test_k_tile_counts_nested_loops_by_their_solved_trips_and_calls_by_subroutine_length(listing):
    assert counts.subroutine_length(listing, "$__internal_0_$__cuda_sm20_div_s64") == 5
    tile = counts.k_tile(listing, ffma_per_tile=16)
    assert tile.trips == 4
    expected = {"FFMA": 16, "LDS.32": 4, "LDS.64": 0, "LDS.128": 4, "LDG": 1, "STS": 1, "INT": 1 + 4 * 2,
                "BRANCH": 1 + 4, "BARRIER": 2, "CALL": 1 + 5, "OTHER": 0}  # fmt: skip
    assert tile.counts == expected
    assert tile.total == 48 and tile.ffma_share == pytest.approx(16 / 48)


def test_outside_and_per_thread_counts(listing):
    out = counts.outside(listing, listing.loops()[0])
    assert out == {**dict.fromkeys(counts.CLASSES, 0.0), "INT": 1, "BRANCH": 2, "OTHER": 4}  # S2R LDL STG STL
    # 4 instructions outside loops once; the 16 + 3 in loops and the 5 of the call in a loop, 3 times
    assert sum(counts.per_thread(listing, trips=3).values()) == 4 + 3 * (16 + 3) + 3 * 5


def test_division_calls_and_local_memory_in_loops(listing):
    assert counts.calls(listing) == {"$__internal_0_$__cuda_sm20_div_s64": 1}
    assert counts.div64_calls(listing) == 1
    assert counts.local_memory(listing) == counts.LocalMemory(instructions=2, in_loop=1)  # the LDL; the STL is after
    elementwise = parse(ELEMENTWISE)
    assert counts.div64_calls(elementwise) == 0 and counts.local_memory(elementwise).instructions == 0
    assert counts.per_thread(elementwise, trips=10) == {**dict.fromkeys(counts.CLASSES, 0.0), "OTHER": 1 + 20,
                                                        "LDG": 10, "INT": 10, "BRANCH": 1 + 10}  # fmt: skip


@pytest.mark.parametrize("name", ["__cuda_sm20_div_u64", "__cuda_sm20_rem_s64", "$__internal_3_$__cuda_sm20_rem_u64"])
def test_every_64_bit_division_routine_counts(name):
    assert counts.DIV64.search(name)
    assert not counts.DIV64.search("$__internal_0_$__cuda_sm3x_div_rn_noftz_f32_slowpath")


@pytest.mark.parametrize("registers, shared, threads, expected", [
    (198, 8448, 256, (1, 8, "registers")),  # 200 x 32 = 6,400 per warp: 10 warps fit, one block of 8
    (128, 8448, 256, (2, 16, "registers")),
    (32, 0, 256, (8, 64, "warps")),
    (32, 100 * 1024, 256, (2, 16, "shared memory")),  # 101 KB per block with the reserved 1 KB
    (16, 0, 32, (32, 32, "blocks")),
])  # fmt: skip
def test_occupancy_on_sm90(registers, shared, threads, expected):
    occ = occupancy(registers, shared, threads)
    assert (occ.blocks, occ.warps, occ.limited_by) == expected
