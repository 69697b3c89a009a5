"""Pieces of training that need no kernels: the lr schedule, the memory estimate, plotting, CLI checks."""

import json

import pytest

from refnet.commands import plot
from refnet.cli import main
from refnet.trainer import LearningRateSchedule, TrainError, check_memory, training_bytes


def test_plateau_schedule_divides_by_ten_at_most_max_drops_times():
    s = LearningRateSchedule(0.01, patience=1, max_drops=3)
    lrs = []
    for epoch, error in enumerate([0.9, 0.8, 0.8, 0.7, 0.71, 0.69, 0.69, 0.69, 0.69, 0.69], start=1):
        s.end_epoch(epoch, error)
        lrs.append(s.lr)
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5])
    assert s.drops == 3


def test_plateau_patience_waits_that_many_epochs():
    s = LearningRateSchedule(0.1, patience=2)
    for epoch, error in enumerate([0.5, 0.6, 0.55], start=1):
        s.end_epoch(epoch, error)
    assert s.lr == pytest.approx(0.01)


def test_lr_steps_replace_the_plateau():
    s = LearningRateSchedule(0.01, steps=[2, 4])
    lrs = []
    for epoch in range(1, 6):
        s.end_epoch(epoch, 0.5)  # a flat error would trigger the plateau rule; steps ignore it
        lrs.append(s.lr)
    assert lrs == pytest.approx([0.01, 0.001, 0.001, 1e-4, 1e-4])


def test_schedule_state_round_trips():
    s = LearningRateSchedule(0.01, patience=2)
    for epoch, error in enumerate([0.5, 0.6, 0.6], start=1):
        s.end_epoch(epoch, error)
    state = json.loads(json.dumps(s.state_dict()))
    t = LearningRateSchedule(0.01, patience=2)
    t.load_state_dict(state)
    for epoch, error in ((4, 0.6), (5, 0.6)):
        assert s.end_epoch(epoch, error) == t.end_epoch(epoch, error)
        assert s.lr == t.lr


def test_memory_estimate_grows_with_the_batch_and_refuses_clearly():
    from refnet.model import build_layers

    layers = build_layers("seed", 1000, 227, 0.5)
    params = sum(layer.param_count for layer in layers)
    assert params == 62_378_344
    one, two = training_bytes(layers, params, 1), training_bytes(layers, params, 2)
    assert one > 3 * 4 * params and two - one == one - training_bytes(layers, params, 0)
    with pytest.raises(TrainError, match=r"--batch-size 100000 needs about .* GiB .* largest batch that fits"):
        check_memory(layers, params, 100_000, "cpu")


def test_plot_writes_a_png(tmp_path):
    records = [{"kind": "step", "step": s, "epoch": s / 4, "train_loss": 2.3 - 0.1 * s} for s in range(1, 9)]
    records += [{"kind": "epoch", "step": 4 * e, "epoch": e, "train_loss": 2.2 - 0.3 * e, "train_top1_error": 0.9 - 0.1 * e,
                 "train_top5_error": 0.5 - 0.1 * e, "val_loss": 2.1, "val_top1_error": 0.8 - 0.1 * e,
                 "val_top5_error": 0.4} for e in (1, 2)]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + '\n{"kind": "st')
    assert main(["plot", str(tmp_path)]) == 0
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_plot_of_a_directory_without_metrics_is_an_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "tpu"], "--device: expected cpu or cuda, got 'tpu'"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
        (["--keep", "-1"], "--keep: expected an integer >= 0, got -1"),
        (["--lr", "-1"], "--lr: expected a number > 0"),
        (["--dropout", "1.5"], "--dropout: expected a probability"),
        (["--warmup-epochs", "-1"], "--warmup-epochs: expected a number in [0, --epochs], got -1.0"),
        (["--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs: expected a number in [0, --epochs], got 3.0"),
        (["--mpi-timeout", "0"], "--mpi-timeout: expected a number of seconds > 0, got 0.0"),
        ([], "no such directory"),
    ],
)
def test_bad_train_arguments_are_clear_errors(tmp_path, capsys, argv, message):
    status = main(["train", "--data", str(tmp_path / "missing"), "--run", str(tmp_path / "run"), "--quiet", *argv])
    assert status == 2
    assert message in capsys.readouterr().err


def test_train_refuses_a_directory_that_is_not_a_dataset(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["train", "--data", str(tmp_path / "data"), "--run", str(tmp_path / "run"), "--quiet"]) == 2
    assert "not a usable converted dataset" in capsys.readouterr().err


def test_scaled_init_is_seeded_and_has_the_documented_scales():
    import numpy as np

    from refnet.model import AlexNet
    from refnet.trainer import scaled_init

    nets = [AlexNet(10, "seed", 67, 0.5, "cpu", seed=0) for _ in range(3)]
    for net, seed in zip(nets, (4, 4, 5)):
        scaled_init(net, input_std=50.0, seed=seed)
    a, b, c = (net.state_dict() for net in nets)
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert not np.array_equal(a["conv3.weight"], c["conv3.weight"])
    assert a["conv1.weight"].std() == pytest.approx(np.sqrt(2 / 363) / 50, rel=0.05)
    assert a["conv3.weight"].std() == pytest.approx(np.sqrt(2 / (256 * 9)), rel=0.02)
    assert a["fc6.weight"].std() == pytest.approx(0.05 * np.sqrt(2 / 256), rel=0.02)
    assert a["fc7.weight"].std() == pytest.approx(np.sqrt(2 / 4096), rel=0.02)
    assert a["fc8.weight"].std() == pytest.approx(0.01, rel=0.05)
    assert all(not a[name].any() for name in a if name.endswith(".bias"))


def test_a_signal_during_the_stop_vote_waits_for_the_next_vote(monkeypatch):
    """Every rank acts on the vote's answer, the signalled one too: a SIGTERM that lands after this
    rank voted "go on" must not make it leave while its peers go on to the next step's allreduce."""
    import signal

    import numpy as np

    from refnet import trainer
    from refnet.distributed import World

    stop = trainer._StopRequest()

    def vote_while_a_signal_lands(values, world):
        stop.signum = signal.SIGTERM
        return np.zeros_like(values)  # when the votes were counted, nobody had asked to stop

    rank = trainer.Trainer.__new__(trainer.Trainer)
    rank.world = World(rank=1, size=2)
    monkeypatch.setattr(trainer, "allreduce_sum", vote_while_a_signal_lands)
    assert rank._agree_to_stop(stop) is False
    monkeypatch.setattr(trainer, "allreduce_sum", lambda values, world: values.copy())
    assert rank._agree_to_stop(stop) is True
