"""The CPU's reported caches and vector registers, and the blocking chosen from them."""

from refnet.kernels.cpu import gemm, machine


def _write_cache(root, index, level, kind, size):
    d = root / f"index{index}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cache_sizes_read_from_sys_skip_instruction_caches(tmp_path):
    _write_cache(tmp_path, 0, 1, "Data", "48K")
    _write_cache(tmp_path, 1, 1, "Instruction", "32K")
    _write_cache(tmp_path, 2, 2, "Unified", "2048K")
    _write_cache(tmp_path, 3, 3, "Unified", "105M")
    assert machine.cache_sizes(str(tmp_path)) == {"L1d": 48 * 1024, "L2": 2 * 1024 * 1024, "L3": 105 * 1024 * 1024}


def test_cache_sizes_fall_back_to_defaults_without_sys(tmp_path):
    assert machine.cache_sizes(str(tmp_path / "absent")) == machine.DEFAULT_CACHES


def test_blocking_for_avx512_keeps_the_zen4_measured_settings():
    zen4 = {"L1d": 32 * 1024, "L2": 1024 * 1024, "L3": 32 * 1024 * 1024}
    b = machine.choose_blocking(zen4, avx512=True)
    assert (b["MR"], b["NR"], b["KC"], b["MB"], b["NB"]) == (8, 32, 256, 256, 256)


def test_blocking_for_avx2_fits_sixteen_registers_and_a_smaller_l2():
    zen3 = {"L1d": 32 * 1024, "L2": 512 * 1024, "L3": 32 * 1024 * 1024}
    b = machine.choose_blocking(zen3, avx512=False)
    assert (b["MR"], b["NR"]) == (4, 16)        # 8 ymm of c + 2 of b + 1 broadcast, room to spare
    assert b["KC"] * b["NR"] * 4 <= zen3["L1d"]
    assert b["MB"] % b["MR"] == 0 and b["MB"] * b["KC"] * 4 <= zen3["L2"] // 4 + b["MR"] * b["KC"] * 4
    assert b["NB"] % b["NR"] == 0 and b["KC"] * b["NB"] * 4 <= zen3["L2"] // 4
    assert (b["KC"], b["MB"], b["NB"]) == (256, 128, 128)


def test_gemm_uses_the_chosen_blocking():
    b = machine.BLOCKING
    assert (gemm.MR, gemm.NR, gemm.KC, gemm.MB, gemm.NB) == (b["MR"], b["NR"], b["KC"], b["MB"], b["NB"])
    assert gemm.NR % 16 == 0


def test_features_follow_numba_s_target_when_one_is_named():
    assert machine.cpu_features({"NUMBA_CPU_NAME": "generic"}) == ("generic", False, False)
    named = machine.cpu_features({"NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "+avx2,+avx512f"})
    assert named == ("skylake-avx512", True, True)
    host = machine.cpu_features({})
    assert host[0] and isinstance(host[1], bool)
