"""`refnet sass`'s one-line errors (no compilation: the analysis itself is tests/cuda/test_sass.py)."""

from refnet import cli
from refnet.sass import toolchain


def test_missing_tools_are_one_line_naming_the_wheels(monkeypatch, capsys):
    def nothing(system=True):
        raise toolchain.ToolchainNotFound(f"ptxas and nvdisasm not found: {toolchain.INSTALL_HINT}")

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr(toolchain, "find_toolchain", nothing)
    assert cli.main(["sass"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm" in err


def test_bad_batch_and_the_simulator_are_refused(monkeypatch, capsys):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    assert cli.main(["sass", "--batch", "0"]) == 2
    assert "--batch: expected a positive batch size, got 0" in capsys.readouterr().err
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert cli.main(["sass"]) == 2
    assert "simulator cannot compile" in capsys.readouterr().err
