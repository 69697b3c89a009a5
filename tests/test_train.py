"""`refnet train` end to end on tiny shards (input 67, batch 4): learning, kill -9 and resume,
SIGTERM, non-finite values, mismatched checkpoints, device errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import shard_writer

from refnet import checkpoint as ck
from refnet.cli import main

SIZE, CROP, CLASSES = 70, 67, 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def learnable_images(n, seed):
    """Noise images whose class is how bright their left half is: learnable through any crop or flip."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % CLASSES).astype(np.int32)
    images = rng.integers(0, 120, size=(n, SIZE, SIZE, 3)).astype(np.int32)
    images[:, :, : SIZE // 2, :] += 60 * labels[:, None, None, None]
    images[:, :, SIZE // 2 :, :] += 60 * (CLASSES - 1 - labels)[:, None, None, None]
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_learnable_shards(root, train_images, val_images, shard_size):
    """Shards of `learnable_images` (train seed 0, val seed 1) under `root`; returns root as a str."""
    splits = {"train": learnable_images(train_images, 0), "val": learnable_images(val_images, 1)}
    shard_writer.write_dataset(root, splits, [f"c{i}" for i in range(CLASSES)], shard_size=shard_size)
    return str(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_learnable_shards(tmp_path_factory.mktemp("shards"), 12, 6, shard_size=5)


def train_args(data_dir, run_dir, *extra):
    return ["train", "--data", data_dir, "--run", str(run_dir), "--input-size", str(CROP), "--batch-size", "4",
            "--quiet", "--log-every", "1", *extra]  # fmt: skip


def read_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run_python(code, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def test_loss_goes_down_and_the_run_directory_is_complete(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert main(train_args(data_dir, run_dir, "--epochs", "8", "--lr", "0.02", "--dropout", "0")) == 0
    steps = [r for r in read_records(run_dir) if r["kind"] == "step"]
    epochs = [r for r in read_records(run_dir) if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 25))
    assert [r["epoch"] for r in epochs] == list(range(1, 9))
    first, last = np.mean([r["train_loss"] for r in steps[:6]]), np.mean([r["train_loss"] for r in steps[-6:]])
    assert last < 0.6 * first, (first, last)
    for key in ("lr", "train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error", "images_per_second", "wall_seconds"):
        assert key in epochs[-1]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_classes"] == CLASSES and config["versions"]["numba"]
    assert sorted(p.name for p in run_dir.iterdir() if p.suffix == ".h5") == \
        ["ckpt-0006.h5", "ckpt-0007.h5", "ckpt-0008.h5", "latest.h5"]  # fmt: skip
    latest = ck.load_checkpoint(run_dir / "latest.h5")
    assert (latest.step, latest.epoch, latest.batch_in_epoch) == (24, 8, 0)
    assert latest.classes == ["c0", "c1", "c2"] and latest.mean_image.shape == (SIZE, SIZE, 3)


def test_keep_0_writes_latest_once_at_the_end_with_the_same_parameters(data_dir, tmp_path, monkeypatch):
    args = ("--epochs", "3", "--lr", "0.02", "--dropout", "0")
    assert main(train_args(data_dir, tmp_path / "kept", *args)) == 0
    written, real_save = [], ck.save_checkpoint
    monkeypatch.setattr(ck, "save_checkpoint",
                        lambda path, checkpoint: (written.append(os.path.basename(path)), real_save(path, checkpoint)))
    assert main(train_args(data_dir, tmp_path / "none", *args, "--keep", "0")) == 0
    assert written == ["latest.h5"]
    assert sorted(p.name for p in (tmp_path / "none").iterdir() if p.suffix == ".h5") == ["latest.h5"]
    none, kept = ck.load_checkpoint(tmp_path / "none" / "latest.h5"), ck.load_checkpoint(tmp_path / "kept" / "latest.h5")
    assert (none.step, none.epoch) == (kept.step, kept.epoch) == (9, 3)
    for name, value in kept.params.items():
        np.testing.assert_array_equal(none.params[name], value)


def test_kill_9_then_resume_equals_an_uninterrupted_run(data_dir, tmp_path):
    """SIGKILL in the middle of step 5 (epoch 2, batch 2), inside a warmup of 6 steps; the same
    command then finishes the run."""
    common = ["--epochs", "2", "--save-every", "1", "--lr", "0.02", "--warmup-epochs", "2"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert main(train_args(data_dir, clean, *common)) == 0

    proc = run_python(f"""
        import os, signal, sys
        from refnet.model import AlexNet
        real = AlexNet.forward_backward
        def forward_backward_then_die(self, x, labels):
            loss = real(self, x, labels)
            if self.step == 5:  # gradients computed, parameters not yet updated
                os.kill(os.getpid(), signal.SIGKILL)
            return loss
        AlexNet.forward_backward = forward_backward_then_die
        from refnet.cli import main
        sys.exit(main({train_args(data_dir, killed, *common)!r}))
    """)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err
    assert ck.load_checkpoint(killed / "latest.h5").step == 4

    assert main(train_args(data_dir, killed, *common)) == 0
    a, b = ck.load_checkpoint(clean / "latest.h5"), ck.load_checkpoint(killed / "latest.h5")
    assert (a.step, a.epoch) == (b.step, b.epoch) == (6, 2)
    for group in ("params", "momentum"):
        for name, value in getattr(a, group).items():
            np.testing.assert_array_equal(getattr(b, group)[name], value, err_msg=f"{group}/{name}")
    assert a.schedule == b.schedule
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("wall_seconds", "images_per_second")} for r in records]  # noqa: E731
    assert strip(read_records(clean)) == strip(read_records(killed))
    step_lrs = [r["lr"] for r in read_records(clean) if r["kind"] == "step"]
    assert step_lrs == pytest.approx([0.02 * step / 6 for step in range(1, 7)])


def test_sigterm_finishes_the_step_saves_and_says_how_to_resume(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_python(f"""
        import sys
        from refnet.cli import main
        sys.exit(main({train_args(data_dir, run_dir, "--epochs", "1000")!r}))
    """)
    deadline = time.time() + 300
    while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM after step" in err and "Resume with: refnet train" in err
    stopped_at = int(err.split("after step ")[1].split(";")[0])
    assert ck.load_checkpoint(run_dir / "latest.h5").step == stopped_at >= 1


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_values_stop_with_the_step_and_keep_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch, capsys, what):
    from refnet.model import AlexNet

    real = AlexNet.forward_backward

    def poisoned(self, x, labels):
        loss = real(self, x, labels)
        if self.step == 3:
            if what == "loss":
                return float("nan")
            self.grads["fc7.weight"][1, 2] = np.inf
        return loss

    monkeypatch.setattr(AlexNet, "forward_backward", poisoned)
    run_dir = tmp_path / "run"
    assert main(train_args(data_dir, run_dir, "--epochs", "3", "--save-every", "1")) == 1
    err = capsys.readouterr().err
    assert "at step 3 (epoch 1, batch 3)" in err
    assert ("the loss is nan" if what == "loss" else "gradient of fc7.weight is not finite") in err
    latest = ck.load_checkpoint(run_dir / "latest.h5")
    assert latest.step == 2
    assert all(np.isfinite(v).all() for v in [*latest.params.values(), *latest.momentum.values()])
    text = (run_dir / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text and [r["step"] for r in read_records(run_dir)] == [1, 2]


def test_checkpoint_of_another_network_is_refused(data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(train_args(data_dir, run_dir, "--max-steps", "1", "--epochs", "1")) == 0
    assert main(train_args(data_dir, run_dir, "--variant", "paper", "--max-steps", "2")) == 2
    assert "was trained with variant='seed', but this run uses variant='paper'" in capsys.readouterr().err
    assert main(train_args(data_dir, run_dir, "--seed", "3", "--max-steps", "2")) == 2
    assert "different seed=0" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run_dir / "missing.h5"), "--data", data_dir]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_without_a_checkpoint_and_too_large_settings_are_clear_errors(data_dir, tmp_path, capsys):
    assert main(train_args(data_dir, tmp_path / "new", "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(train_args(data_dir, tmp_path / "r", "--batch-size", "64")) == 2
    assert "larger than the train split" in capsys.readouterr().err
    assert main(train_args(data_dir, tmp_path / "r", "--input-size", "80")) == 2
    assert "larger than the stored images (70 px)" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_clear_error(data_dir, tmp_path, capsys):
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(train_args(data_dir, tmp_path / "r", "--device", "cuda")) == 2
    assert "'cuda' was requested but no CUDA GPU is available" in capsys.readouterr().err
