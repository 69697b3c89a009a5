"""The demo's stage and compile-time accounting, and its compile warm-up's parent side."""

import json
import sys

import pytest

from refnet.commands import demo, jit_warmup


def test_epoch_seconds_are_differences_of_the_cumulative_epoch_walls():
    records = [{"kind": "step", "wall_seconds": 1.0}, {"kind": "epoch", "wall_seconds": 70.0},
               {"kind": "step", "wall_seconds": 75.0}, {"kind": "epoch", "wall_seconds": 80.0},
               {"kind": "epoch", "wall_seconds": 91.0}]  # fmt: skip
    assert demo.epoch_seconds(records) == pytest.approx([70.0, 10.0, 11.0])


def test_compile_time_is_the_wait_plus_the_first_epochs_excess_over_the_median_warm_epoch():
    got = demo.compile_seconds_waited(4.0, [30.0, 10.0, 12.0, 11.0])
    assert got["warm_epoch_seconds"] == 11.0
    assert got["first_epoch_extra_seconds"] == pytest.approx(19.0)
    assert got["total_seconds"] == pytest.approx(23.0)


def test_a_first_epoch_faster_than_the_warm_ones_adds_no_compile_time():
    assert demo.compile_seconds_waited(2.5, [9.0, 10.0])["total_seconds"] == pytest.approx(2.5)


def test_one_epoch_gives_no_first_epoch_excess():
    got = demo.compile_seconds_waited(1.0, [9.0])
    assert got["first_epoch_extra_seconds"] is None and got["total_seconds"] is None


def test_stage_clock_adds_up_repeated_stages():
    clock = demo.StageClock()
    for _ in range(2):
        clock.start()
        clock.stop("train")
    assert set(clock.wall) == {"train"} and clock.wall["train"] >= 0 and clock.cpu["train"] >= 0


class _FakeProcesses:
    """Stands in for the two warm-up processes: each prints the protocol lines it is given."""

    def __init__(self, monkeypatch, lines, status=0):
        real_popen = jit_warmup.subprocess.Popen

        def popen(cmd, **kwargs):
            script = f"import sys\nfor line in {lines!r}: print(line)\nsys.exit({status})"
            return real_popen([sys.executable, "-c", script], **kwargs)

        monkeypatch.setattr(jit_warmup.subprocess, "Popen", popen)


def test_warmup_says_once_that_it_compiles_and_collects_each_parts_report(monkeypatch, tmp_path):
    done = {"event": "done", "compiled": 3, "compile_seconds": 2.0, "compile_cpu_seconds": 1.5, "cpu_seconds": 2.5,
            "wall_seconds": 3.0}  # fmt: skip
    _FakeProcesses(monkeypatch, [json.dumps({"event": "compiling"}), "not json", json.dumps(done)])
    notices = []
    warmup = jit_warmup.JitWarmup(input_size=67, num_classes=10, batch_size=32, image_size=76,
                                  log_path=tmp_path / "log", on_compiling=lambda: notices.append(1))  # fmt: skip
    assert warmup.join() >= 0
    assert notices == [1] and not warmup.running()
    assert warmup.summary() == {part: {k: v for k, v in done.items() if k != "event"} for part in jit_warmup.PARTS}


def test_a_failed_warmup_part_is_reported_not_raised(monkeypatch, tmp_path, capsys):
    _FakeProcesses(monkeypatch, [], status=3)
    warmup = jit_warmup.JitWarmup(input_size=67, num_classes=10, batch_size=32, image_size=76, log_path=tmp_path / "log")
    warmup.join()
    err = capsys.readouterr().err
    assert all(f"the {part} compile warm-up failed (status 3" in err for part in jit_warmup.PARTS)
    assert warmup.summary() == {}


def test_stop_ends_the_parts_without_calling_them_failed(monkeypatch, tmp_path, capsys):
    real_popen = jit_warmup.subprocess.Popen
    monkeypatch.setattr(jit_warmup.subprocess, "Popen",
                        lambda cmd, **kw: real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw))
    warmup = jit_warmup.JitWarmup(input_size=67, num_classes=10, batch_size=32, image_size=76, log_path=tmp_path / "log")
    assert warmup.running()
    warmup.stop()
    assert not warmup.running() and capsys.readouterr().err == ""


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--batch-size", "0"], ["--epochs", "0"]])
def test_demo_refuses_bad_settings_before_writing_anything(tmp_path, capsys, option):
    from refnet.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *option]) == 2
    assert "refnet demo: error:" in capsys.readouterr().err and not out.exists()
