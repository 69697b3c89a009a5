"""Resident blocks and warps per SM, from a kernel's registers, shared memory and block size.

sm_90 (H100, H200) limits, from NVIDIA's CUDA occupancy calculator and the Hopper tuning guide:

    65,536 registers per SM, allocated per warp in units of 256 (a thread's count rounded up to a
    multiple of 8), at most 255 per thread
    228 KB of shared memory per SM (227 KB per block), allocated in units of 128 bytes, plus 1 KB
    the system reserves per resident block
    64 resident warps and 32 resident blocks per SM

Resident blocks = the smallest of the register, shared-memory, warp and block limits.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SmLimits:
    registers: int = 65536
    register_unit: int = 256  # registers per warp are allocated in multiples of this
    shared_bytes: int = 228 * 1024
    shared_unit: int = 128
    shared_reserved_per_block: int = 1024
    warps: int = 64
    blocks: int = 32


SM_90 = SmLimits()
LIMITS = {"sm_90": SM_90}


@dataclass(frozen=True)
class Occupancy:
    blocks: int  # resident blocks per SM
    warps: int  # resident warps per SM
    limited_by: str  # "registers" | "shared memory" | "warps" | "blocks"

    def fraction(self, limits=SM_90):
        return self.warps / limits.warps


def occupancy(registers, shared_bytes, threads_per_block, limits=SM_90):
    warps_per_block = math.ceil(threads_per_block / 32)
    registers_per_warp = math.ceil(max(registers, 1) * 32 / limits.register_unit) * limits.register_unit
    shared = math.ceil(shared_bytes / limits.shared_unit) * limits.shared_unit + limits.shared_reserved_per_block
    bounds = {  # on a tie the hardware's own limits (warps, blocks) are named
        "warps": limits.warps // warps_per_block,
        "blocks": limits.blocks,
        "registers": (limits.registers // registers_per_warp) // warps_per_block,
        "shared memory": limits.shared_bytes // shared,
    }
    limited_by = min(bounds, key=bounds.get)
    blocks = bounds[limited_by]
    return Occupancy(blocks, blocks * warps_per_block, limited_by)
