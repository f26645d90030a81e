import pytest
import torch
from torch.nn import functional as F

from aeclust._utils import local_seed
from aeclust.nn import MLPAutoencoder
from aeclust.pretrain import PretrainConfig, pretrain_autoencoder
from aeclust.training import (
    Callback,
    Checkpoint,
    EarlyStopping,
    Trainer,
    TrainingModule,
    batch_slices,
    checkpointing,
    eval_mode,
    make_optimizer,
)


def _setup(seed=0):
    with local_seed(seed):
        ae = MLPAutoencoder([12, 8, 3])
        x = torch.rand(100, 12)
    return ae, x


def _loss(ae):
    def fn(idx, xb):
        _, x_hat = ae(xb)
        return F.mse_loss(x_hat, xb), {"rec": F.mse_loss(x_hat, xb)}

    return fn


def test_batch_slices_never_leave_a_single_sample():
    assert batch_slices(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert batch_slices(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert batch_slices(1, 4) == [(0, 1)]
    with pytest.raises(ValueError):
        batch_slices(5, 0)


def test_loss_decreases_and_history_is_recorded():
    ae, x = _setup()
    trainer = Trainer(ae, make_optimizer(ae.parameters(), lr=1e-2), epochs=30, batch_size=16)
    hist = trainer.run([x], _loss(ae))
    assert len(hist) == 30
    assert [h["epoch"] for h in hist] == list(range(30))
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert hist[-1]["rec"] == pytest.approx(hist[-1]["loss"])
    assert not ae.training


def test_early_stopping_really_stops():
    ae, x = _setup()
    # lr = 0: the loss cannot improve, so training must stop after `patience` epochs.
    trainer = Trainer(
        ae,
        make_optimizer(ae.parameters(), "sgd", lr=0.0, momentum=0.0),
        epochs=100,
        batch_size=50,
        shuffle=False,
        early_stopping=EarlyStopping(patience=3),
    )
    hist = trainer.run([x], _loss(ae))
    assert trainer.stopped_early
    assert len(hist) == 4  # the first epoch sets the best value, then 3 without improvement
    assert hist[-1]["stopped_early"] is True


class _Reconstruct(TrainingModule):
    """The autoencoder's reconstruction as a TrainingModule; ``crash_at``/``stop_at``: the step
    before which ``before_step`` raises an interruption / StopTraining; ``stop_epoch``: the epoch
    whose ``on_epoch_end`` stops training after annotating the record."""

    def __init__(self, ae, *, crash_at=None, stop_at=None, stop_epoch=None):
        super().__init__()
        self.ae = ae
        self.crash_at, self.stop_at, self.stop_epoch = crash_at, stop_at, stop_epoch

    def training_step(self, idx, xb):
        return _loss(self.ae)(idx, xb)

    def before_step(self, step):
        from aeclust.training import StopTraining

        if step == self.crash_at:
            raise _Interrupt
        if step == self.stop_at:
            raise StopTraining

    def on_epoch_end(self, epoch, record):
        record["marker"] = epoch * 2
        return epoch == self.stop_epoch


def test_on_epoch_end_can_stop_and_annotate():
    ae, x = _setup()
    module = _Reconstruct(ae, stop_epoch=2)
    trainer = Trainer(module, make_optimizer(module.parameters()), epochs=10, batch_size=32)
    hist = trainer.fit([x])
    assert len(hist) == 3 and hist[-1]["marker"] == 4


class _Interrupt(Exception):
    pass


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    ae_ref, x = _setup(1)
    with local_seed(5):
        Trainer(ae_ref, make_optimizer(ae_ref.parameters()), epochs=6, batch_size=16, seed=3).run(
            [x], _loss(ae_ref)
        )

    ckpt = tmp_path / "run.ckpt"
    ae, _ = _setup(1)
    opt = make_optimizer(ae.parameters())

    # a crash in the middle of the fourth epoch (7 steps per epoch)
    module = _Reconstruct(ae, crash_at=7 * 3 + 2)
    with local_seed(5), pytest.raises(_Interrupt):
        Trainer(module, opt, epochs=6, batch_size=16, seed=3, checkpoint_path=ckpt).fit([x])
    assert ckpt.exists()

    ae2, _ = _setup(99)  # different initial weights: everything must come from the checkpoint
    module2 = _Reconstruct(ae2)
    trainer = Trainer(
        module2,
        make_optimizer(ae2.parameters()),
        epochs=6,
        batch_size=16,
        seed=3,
        checkpoint_path=ckpt,
    )
    hist = trainer.fit([x])
    assert len(hist) == 6
    assert not ckpt.exists()  # removed once training finished
    for a, b in zip(ae_ref.state_dict().values(), ae2.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def _crash_after_first_save(monkeypatch):
    """Make the next checkpoint save end the run right after writing (a process cut off)."""
    original = Checkpoint.save

    def save_then_crash(self, trainer, epoch):
        original(self, trainer, epoch)
        raise _Interrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_crash)
    return lambda: monkeypatch.setattr(Checkpoint, "save", original)


def _keyed_run(ae, x, **kw):
    trainer = Trainer(ae, make_optimizer(ae.parameters()), epochs=5, batch_size=16, seed=3, **kw)
    with local_seed(5):
        return trainer.run([x], _loss(ae))


def test_checkpointing_block_resumes_a_keyed_stage(tmp_path, monkeypatch):
    ae_ref, x = _setup(1)
    reference = _keyed_run(ae_ref, x)
    restore = _crash_after_first_save(monkeypatch)
    with checkpointing(tmp_path / "cell", interval_s=0) as folder:
        ae, _ = _setup(1)
        with pytest.raises(_Interrupt):
            _keyed_run(ae, x, resume_key="stage")
        assert (folder / "stage.pt").exists()
        restore()
        ae2, _ = _setup(99)  # everything must come from the checkpoint
        with local_seed(123):  # the global RNG state is restored from the checkpoint too
            hist = Trainer(
                ae2,
                make_optimizer(ae2.parameters()),
                epochs=5,
                batch_size=16,
                seed=3,
                resume_key="stage",
            ).run([x], _loss(ae2))
        assert not (folder / "stage.pt").exists()  # removed once the stage finished
    assert [h["epoch"] for h in hist] == list(range(5))
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in reference])
    for a, b in zip(ae_ref.state_dict().values(), ae2.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpointing_ignores_a_checkpoint_of_another_run(tmp_path, monkeypatch, caplog):
    _, x = _setup(1)
    restore = _crash_after_first_save(monkeypatch)
    with checkpointing(tmp_path, interval_s=0):
        ae, _ = _setup(1)
        with pytest.raises(_Interrupt):
            _keyed_run(ae, x, resume_key="stage")
        restore()
        other_x = x + 1.0  # other data, same shapes: the checkpoint must not be used
        ae_fresh, _ = _setup(1)
        with caplog.at_level("WARNING", logger="aeclust.training"):
            hist = _keyed_run(ae_fresh, other_x, resume_key="stage")
    assert "saved by a different run" in caplog.text
    ae_ref, _ = _setup(1)
    reference = _keyed_run(ae_ref, other_x)
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in reference])
    # a trainer without a resume_key never checkpoints, even inside a block
    with checkpointing(tmp_path / "none", interval_s=0) as folder:
        _keyed_run(_setup(1)[0], x)
        assert not folder.exists()
    with pytest.raises(ValueError, match="interval_s"):
        with checkpointing(tmp_path, interval_s=-1):
            pass


def test_non_finite_loss_is_reported():
    ae, x = _setup()
    trainer = Trainer(ae, make_optimizer(ae.parameters()), epochs=2, batch_size=50)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        trainer.run([x], lambda idx, xb: ae(xb)[1].sum() * float("nan"))


def test_bf16_autocast_trains():
    ae, x = _setup()
    trainer = Trainer(
        ae,
        make_optimizer(ae.parameters(), lr=1e-2),
        epochs=20,
        batch_size=16,
        autocast_dtype=torch.bfloat16,
    )
    hist = trainer.run([x], _loss(ae))
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert all(p.dtype == torch.float32 for p in ae.parameters())  # fp32 master weights


def test_pretrain_cache_hit_returns_the_same_network(tmp_path):
    cfg = PretrainConfig(epochs=3, batch_size=32)
    ae1, x = _setup(2)
    first = pretrain_autoencoder(ae1, x, cfg, seed=0, cache_dir=tmp_path, use_cache=True)
    h1 = first.history
    assert first.cached is False and first.autoencoder is ae1 and first.seconds > 0
    files = list(tmp_path.glob("ae-*.pt"))
    assert len(files) == 1 and len(h1) == 3

    ae2, _ = _setup(2)
    calls = []
    ae2.register_forward_hook(lambda *a: calls.append(1))
    second = pretrain_autoencoder(ae2, x, cfg, seed=0, cache_dir=tmp_path, use_cache=True)
    h2 = second.history
    assert second.cached is True  # said by the call, not guessed from the cache's file names
    assert pretrain_autoencoder(_setup(2)[0], x, cfg, seed=0).cached is None  # no cache used
    assert calls == []  # no training happened
    assert h2 == h1
    for a, b in zip(ae1.state_dict().values(), ae2.state_dict().values()):
        assert torch.equal(a, b)

    # another seed, other hyper-parameters or other data: a different entry
    ae3, _ = _setup(2)
    pretrain_autoencoder(ae3, x, cfg, seed=1, cache_dir=tmp_path, use_cache=True)
    ae4, _ = _setup(2)
    pretrain_autoencoder(ae4, x[:50], cfg, seed=0, cache_dir=tmp_path, use_cache=True)
    assert len(list(tmp_path.glob("ae-*.pt"))) == 3


def test_make_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], "rmsprop")


def test_stop_training_from_a_step_hook_ends_cleanly():
    ae, x = _setup()
    module = _Reconstruct(ae, stop_at=25)  # the sixth step of the third epoch
    trainer = Trainer(module, make_optimizer(ae.parameters()), epochs=10, batch_size=10)
    hist = trainer.fit([x])
    assert trainer.n_steps == 25
    assert len(hist) == 3 and hist[-1]["converged"] is True
    assert hist[-1]["loss"] > 0


class _Recorder(TrainingModule):
    """A one-parameter model that records when the Trainer calls each hook."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.events: list[str] = []

    def on_epoch_start(self, epoch: int) -> None:
        self.events.append(f"start{epoch}")

    def before_step(self, step: int) -> None:
        self.events.append(f"before{step}")

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        self.events.append(f"step{len(idx)}")
        return (xb.sum(dim=1) * self.w).pow(2).mean()

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        record["seen"] = len(self.events)
        self.events.append(f"end{epoch}")

    def on_train_end(self) -> None:
        self.events.append("train_end")


def test_fit_calls_a_training_modules_hooks_in_order():
    module = _Recorder()
    trainer = Trainer(module, torch.optim.SGD(module.parameters(), lr=0.01), epochs=2, batch_size=3)
    history = trainer.fit([torch.ones(6, 2)])
    assert module.events == [
        "start0", "before0", "step3", "before1", "step3", "end0",
        "start1", "before2", "step3", "before3", "step3", "end1",
        "train_end",
    ]  # fmt: skip
    assert [r["seen"] for r in history] == [5, 11]  # on_epoch_end may add to the record
    assert not module.training  # left in eval mode


def test_fit_refuses_a_plain_module_with_the_way_out():
    net = torch.nn.Linear(2, 1)
    trainer = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.01), epochs=1)
    with pytest.raises(TypeError, match=r"TrainingModule.*Trainer\.run"):
        trainer.fit([torch.ones(4, 2)])


@pytest.mark.parametrize("start_training", [True, False])
def test_eval_mode_restores_the_modules_mode_even_after_an_error(start_training):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    net.train(start_training)
    with eval_mode(net) as inside:
        assert inside is net and not net.training and not net[1].training
    assert net.training is start_training and net[1].training is start_training
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("a failing whole-data pass")
    assert net.training is start_training


class _Events(Callback):
    """Records the loop points a callback sees."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def on_fit_start(self, trainer):
        self.log.append(f"fit_start{len(trainer.tensors)}")

    def on_epoch_start(self, trainer, epoch):
        self.log.append(f"epoch_start{epoch}")

    def on_step_end(self, trainer, n_samples):
        self.log.append(f"step{n_samples}")

    def on_epoch_end(self, trainer, record):
        self.log.append(f"epoch_end{record['epoch']}")
        return record["epoch"] == 1  # a callback may stop training

    def on_fit_end(self, trainer):
        self.log.append("fit_end")


def test_callbacks_see_the_loop_and_may_stop_it():
    module, events = _Recorder(), _Events()
    trainer = Trainer(
        module,
        torch.optim.SGD(module.parameters(), lr=0.01),
        epochs=5,
        batch_size=3,
        callbacks=[events],
    )
    history = trainer.fit([torch.ones(6, 2)])
    assert events.log == [
        "fit_start1",
        "epoch_start0", "step3", "step3", "epoch_end0",
        "epoch_start1", "step3", "step3", "epoch_end1",
        "fit_end",
    ]  # fmt: skip
    assert len(history) == 2 and trainer.should_stop
    # the callback's epoch start comes before the module's, its epoch end after
    assert module.events[:2] == ["start0", "before0"]


def test_a_block_gives_its_callback_to_the_stages_a_method_builds():
    from aeclust import DEC
    from aeclust.training import training_callbacks

    stages: list[str] = []

    def note(trainer):
        stages.append(trainer.desc)

    x = torch.rand(60, 6).numpy()
    with training_callbacks(note):
        DEC(3, autoencoder=[8, 2], pretrain_epochs=1, max_iter=4, batch_size=20).fit(x)
    assert stages == ["pretrain", "DEC"]
    DEC(3, autoencoder=[8, 2], pretrain_epochs=1, max_iter=4, batch_size=20).fit(x)
    assert stages == ["pretrain", "DEC"]  # the block is closed
