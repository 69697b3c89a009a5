"""`refnet import` / `refnet export` without the optional onnx package: one line that says how to
install it, exit status 2, nothing written (the package is an extra, `.[onnx]`)."""

import sys

import pytest

from refnet.cli import main


@pytest.fixture
def no_onnx(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError


def test_import_says_how_to_install_onnx(no_onnx, tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")
    out = tmp_path / "ckpt.h5"
    assert main(["import", str(model), "--checkpoint-out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnx package is not installed" in err[0] and ".[onnx]" in err[0]
    assert not out.exists()


def test_export_says_how_to_install_onnx(no_onnx, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "c.h5"), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnx package is not installed" in err[0]
    assert not out.exists() and not list(tmp_path.glob("out.onnx.tmp-*"))
