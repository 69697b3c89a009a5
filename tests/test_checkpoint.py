"""Checkpoint files: round trip, atomic replacement, crashes while saving, refusals, pruning."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refnet import checkpoint as ck


def _checkpoint(value=1.0, step=7):
    rng = np.random.default_rng(int(value * 10))
    params = {"conv1.weight": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
              "conv1.bias": np.full(4, value, np.float32)}  # fmt: skip
    momentum = {name: (0.5 * arr).astype(np.float32) for name, arr in params.items()}
    return ck.Checkpoint(
        params=params, momentum=momentum, step=step, epoch=2, batch_in_epoch=3,
        config={"variant": "seed", "num_classes": 10, "input_size": 67, "lr": 0.01},
        schedule={"lr": 0.001, "drops": 1, "best_error": 0.25, "epochs_without_improvement": 0},
        rng={"init_seed": 0, "dropout_step": step}, classes=["a", "b"],
        mean_image=np.full((5, 5, 3), 3.5, np.float32), wall_seconds=12.5,
    )  # fmt: skip


def _assert_same(a, b):
    for group in ("params", "momentum"):
        assert sorted(getattr(a, group)) == sorted(getattr(b, group))
        for name, arr in getattr(a, group).items():
            np.testing.assert_array_equal(getattr(b, group)[name], arr)
    for attr in ("step", "epoch", "batch_in_epoch", "config", "schedule", "rng", "classes", "wall_seconds"):
        assert getattr(a, attr) == getattr(b, attr), attr
    np.testing.assert_array_equal(a.mean_image, b.mean_image)


def test_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "latest.h5"
    original = _checkpoint()
    ck.save_checkpoint(path, original)
    _assert_same(original, ck.load_checkpoint(path))
    assert [p.name for p in tmp_path.iterdir()] == ["latest.h5"]  # no temporary left behind


def test_layout_is_the_documented_one(tmp_path):
    import h5py

    path = tmp_path / "c.h5"
    ck.save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r") as f:
        assert set(f["params"]) == {"conv1.weight", "conv1.bias"}
        assert set(f["momentum"]) == {"conv1.weight", "conv1.bias"}
        assert f.attrs["format_version"] == ck.FORMAT_VERSION
        assert f.attrs["step"] == 7 and f.attrs["epoch"] == 2


def test_exception_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.h5"
    ck.save_checkpoint(path, _checkpoint(1.0, step=5))
    real = ck._write_contents

    def write_half_then_fail(f, ckpt):
        real(f, ckpt)
        raise OSError("disk full (injected)")

    monkeypatch.setattr(ck, "_write_contents", write_half_then_fail)
    with pytest.raises(OSError, match="injected"):
        ck.save_checkpoint(path, _checkpoint(2.0, step=9))
    assert ck.load_checkpoint(path).step == 5
    assert [p.name for p in tmp_path.iterdir()] == ["latest.h5"]


def test_process_killed_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """SIGKILL in the middle of writing the new file: the old one stays loadable."""
    path = tmp_path / "latest.h5"
    ck.save_checkpoint(path, _checkpoint(1.0, step=5))
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from refnet import checkpoint as ck
        real = ck._write_contents
        def write_then_die(f, ckpt):
            real(f, ckpt)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        ck._write_contents = write_then_die
        params = {{"conv1.weight": np.ones((4, 3, 2, 2), np.float32), "conv1.bias": np.ones(4, np.float32)}}
        ck.save_checkpoint({str(path)!r}, ck.Checkpoint(params=params, momentum=params, step=99, epoch=0,
                           batch_in_epoch=0, config={{"variant": "seed", "num_classes": 10, "input_size": 67}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert ck.load_checkpoint(path).step == 5
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "latest.h5"]
    assert leftovers and all(".tmp-" in name for name in leftovers)  # a torn temp file, never the target


def test_non_finite_values_are_refused_and_nothing_is_written(tmp_path):
    bad = _checkpoint()
    bad.momentum["conv1.bias"][2] = np.inf
    with pytest.raises(ck.CheckpointError, match="momentum/conv1.bias"):
        ck.save_checkpoint(tmp_path / "c.h5", bad)
    bad = _checkpoint()
    bad.params["conv1.weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(ck.CheckpointError, match="params/conv1.weight"):
        ck.save_checkpoint(tmp_path / "c.h5", bad)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_missing_and_unknown_version(tmp_path):
    import h5py

    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ck.CheckpointError, match="cannot be read"):
        ck.load_checkpoint(junk)
    path = tmp_path / "future.h5"
    ck.save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ck.CheckpointError, match="format_version 99"):
        ck.load_checkpoint(path)


def test_network_and_preprocessing_are_recorded(tmp_path):
    import h5py

    path = tmp_path / "c.h5"
    ck.save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r") as f:
        network, preprocessing = json.loads(f.attrs["network"]), json.loads(f.attrs["preprocessing"])
    assert network["order"] == "pool-lrn" and network["lrn"] == {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    assert network["layers"][:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert preprocessing == {"channels": "RGB", "pixel_max": 255.0, "mean": "image", "crop": 67, "resize": 256}
    loaded = ck.load_checkpoint(path)
    assert (loaded.network, loaded.preprocessing) == (network, preprocessing)


def test_a_recorded_layer_order_that_its_settings_do_not_build_is_refused(tmp_path):
    import h5py

    path = tmp_path / "c.h5"
    ck.save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r+") as f:
        network = json.loads(f.attrs["network"])
        network["layers"][2:4] = ["norm1", "pool1"]
        f.attrs["network"] = json.dumps(network)
    with pytest.raises(ck.CheckpointError, match="recorded layer order"):
        ck.load_checkpoint(path)


def write_format_1_checkpoint(path, net, config):
    """A checkpoint as format 1 wrote it (before the layer order was recorded)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
        for key, value in (("step", 3), ("epoch", 0), ("batch_in_epoch", 3)):
            f.attrs[key] = value
        f.attrs["wall_seconds"] = 1.0
        f.attrs["config"] = json.dumps(config, sort_keys=True)
        for key in ("schedule", "rng", "epoch_totals"):
            f.attrs[key] = "{}"
        f.attrs["classes"] = json.dumps([f"c{i}" for i in range(config["num_classes"])])
        for group in ("params", "momentum"):
            g = f.create_group(group)
            for name, arr in net.state_dict().items():
                g.create_dataset(name, data=arr)


def test_format_1_paper_checkpoint_runs_in_the_order_it_was_trained_in(tmp_path):
    """Format 1's `paper` was the seed's order (max-pool, then LRN) with groups=2: it loads as that
    network, not as today's paper order, and resuming it as `paper` says why and what to do."""
    import refnet
    from refnet.evaluate import network_from_checkpoint

    config = {"variant": "paper", "num_classes": 10, "input_size": 67, "dropout": 0.5, "seed": 4, "image_size": 80}
    trained = refnet.AlexNet(10, "paper", 67, seed=4, order="pool-lrn")
    trained.load_state_dict({name: (a * 30).astype(np.float32) for name, a in trained.state_dict().items()})
    path = tmp_path / "v1.h5"
    write_format_1_checkpoint(path, trained, config)
    loaded = ck.load_checkpoint(path)
    assert loaded.format_version == 1 and loaded.network["order"] == "pool-lrn"
    assert loaded.preprocessing == {"channels": "RGB", "pixel_max": 255.0, "mean": "image", "crop": 67, "resize": 80}
    net = network_from_checkpoint(loaded)
    assert [layer.name for layer in net.layers][:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert net.layers[4].groups == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 67, 67)).astype(np.float32) * 50
    np.testing.assert_array_equal(net.forward(x), trained.forward(x))
    today = refnet.AlexNet(10, "paper", 67, seed=4)
    today.load_state_dict(trained.state_dict())
    assert not np.allclose(today.forward(x), trained.forward(x), rtol=1e-3)  # the order matters here
    with pytest.raises(ck.CheckpointError, match="layer order 'pool-lrn' .*format-1.*--order pool-lrn"):
        ck.check_compatible(loaded, variant="paper", num_classes=10, input_size=67, path="v1.h5")
    ck.check_compatible(loaded, variant="paper", num_classes=10, input_size=67, order="pool-lrn")


def test_format_2_paper_checkpoint_runs_in_the_papers_order(tmp_path):
    import refnet
    from refnet.evaluate import network_from_checkpoint

    net = refnet.AlexNet(10, "paper", 67, seed=4)
    params = net.state_dict()
    config = {"variant": "paper", "num_classes": 10, "input_size": 67, "dropout": 0.5, "seed": 4}
    ck.save_checkpoint(tmp_path / "v2.h5", ck.Checkpoint(params=params, momentum=params, step=0, epoch=0,
                                                         batch_in_epoch=0, config=config))  # fmt: skip
    loaded = ck.load_checkpoint(tmp_path / "v2.h5")
    assert loaded.network["order"] == "lrn-pool"
    assert [layer.name for layer in network_from_checkpoint(loaded).layers][:4] == ["conv1", "relu1", "norm1", "pool1"]
    ck.check_compatible(loaded, variant="paper", num_classes=10, input_size=67)


def test_check_compatible_names_the_difference():
    c = _checkpoint()
    ck.check_compatible(c, variant="seed", num_classes=10, input_size=67)
    with pytest.raises(ck.CheckpointError, match="variant='seed'.*variant='paper'"):
        ck.check_compatible(c, variant="paper", num_classes=10, input_size=67)
    with pytest.raises(ck.CheckpointError, match="num_classes=10.*num_classes=1000"):
        ck.check_compatible(c, variant="seed", num_classes=1000, input_size=67)
    with pytest.raises(ck.CheckpointError, match="layer order 'pool-lrn', but this run uses 'lrn-pool'"):
        ck.check_compatible(c, variant="seed", num_classes=10, input_size=67, order="lrn-pool")
    c.network = ck.network_from_config(dict(c.config, lrn={"size": 5, "alpha": 2e-5, "beta": 0.75, "k": 1.0}))
    with pytest.raises(ck.CheckpointError, match="its own LRN constants"):
        ck.check_compatible(c, variant="seed", num_classes=10, input_size=67)


def test_prune_keeps_the_newest_epoch_checkpoints(tmp_path):
    for epoch in (1, 2, 3, 10):
        (tmp_path / ck.epoch_checkpoint_name(epoch)).write_bytes(b"x")
    (tmp_path / ck.LATEST_NAME).write_bytes(b"x")
    removed = ck.prune_checkpoints(tmp_path, keep=2)
    assert sorted(os.path.basename(p) for p in removed) == ["ckpt-0001.h5", "ckpt-0002.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0003.h5", "ckpt-0010.h5", "latest.h5"]
