"""Static analysis of refnet's CUDA kernels from their machine code (SASS), with no GPU.

    toolchain   finds ptxas, nvdisasm and libdevice (NVIDIA's pip wheels or a system toolkit)
    capture     runs a launcher with each kernel launch replaced by a record of it, and compiles
                the recorded kernel: Numba -> PTX -> ptxas -> cubin -> nvdisasm -> SASS
    disasm      parses an `nvdisasm -c` listing: functions, instructions, labels, loops
    counts      what one kernel's machine code issues: instruction classes, the main loop's K
                tile, 64-bit division calls, local memory
    occupancy   resident blocks and warps per SM from registers and shared memory (sm_90)
    passes      AlexNet's layers as passes, each a list of launches at batch-size shapes
    analysis    one row per pass: occupancy, counts, FFMA share, issue-bound ceiling, DRAM time
    step_model  the predicted time of one training step, beside its anchors
    report      the rows as a text table, markdown and JSON
    small_launches  one call of every launcher at small shapes (the compile test, the sanitizer)
"""
