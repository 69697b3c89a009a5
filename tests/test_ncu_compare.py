"""bench/ncu_compare.py reads Nsight Compute's CSV (details page, base units) and puts each
profiled launch beside `refnet sass`'s static prediction. No GPU: a hand-written CSV in ncu's form."""

import json

from bench import ncu_compare

NCU_CSV = '''==PROF== Connected to process 4242 (/usr/bin/python3.12)
==PROF== Profiling "tiled_kernel": 0%....50%....100% - 3 passes
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(729, 2, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","8,000,000"
"0","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(729, 2, 1)","0","9.0","Command line profiler metrics","launch__registers_per_thread","register/thread","198"
"0","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(729, 2, 1)","0","9.0","Command line profiler metrics","sm__warps_active.avg.pct_of_peak_sustained_active","%","12.25"
"0","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(729, 2, 1)","0","9.0","Command line profiler metrics","smsp__inst_executed.sum","inst","1,000,000"
"0","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(729, 2, 1)","0","9.0","Command line profiler metrics","smsp__sass_thread_inst_executed_op_ffma_pred_on.sum","inst","6,400,000"
"1","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(32, 1, 9)","0","9.0","Command line profiler metrics","smsp__inst_executed.sum","inst","100"
"1","4242","python3.12","127.0.0.1","tiled_kernel","1","7","(256, 1, 1)","(32, 1, 9)","0","9.0","Command line profiler metrics","smsp__sass_thread_inst_executed_op_ffma_pred_on.sum","inst","1600"
'''


def test_reads_each_launch_in_order_without_thousands_separators():
    launches = ncu_compare.read_ncu_csv(NCU_CSV)
    assert len(launches) == 2
    assert launches[0]["smsp__inst_executed.sum"] == 1e6 and launches[0]["gpu__time_duration.sum"] == 8e6
    assert launches[1]["smsp__sass_thread_inst_executed_op_ffma_pred_on.sum"] == 1600


def test_compares_issued_ffma_share_and_occupancy_with_the_static_rows(tmp_path):
    sass = {"rows": [
        {"name": "conv2 forward", "variant": "seed", "registers": 198, "warps_per_sm": 8, "loop_ffma_share": 0.212, "ffma_share": 0.21},
        {"name": "fc6 forward", "variant": "seed", "registers": 154, "warps_per_sm": 8, "loop_ffma_share": 0.547, "ffma_share": 0.49},
    ]}  # fmt: skip
    results = ncu_compare.compare(ncu_compare.read_ncu_csv(NCU_CSV), sass, ("conv2 forward", "fc6 forward"))
    assert results[0]["ffma_share"] == (6.4e6 / 32 / 1e6, 0.212, 0.21)
    assert results[0]["occupancy_pct"] == (12.25, 12.5) and results[0]["registers"] == (198, 198)
    assert results[1]["ffma_share"][0] == 0.5 and results[1]["time_ms"] == 0
    csv_path, json_path, md_path = tmp_path / "ncu.csv", tmp_path / "sass.json", tmp_path / "ncu.md"
    csv_path.write_text(NCU_CSV)
    json_path.write_text(json.dumps(sass))
    assert ncu_compare.main([str(csv_path), str(json_path), "--md", str(md_path)]) == 0
    table = md_path.read_text()
    assert "| conv2 forward | 8.000 | 198 / 198 | 12.2 / 12.5 | 20.0% / 21.2% / 21.0% |" in table
