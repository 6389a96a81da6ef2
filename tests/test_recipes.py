"""Every registered recipe, parametrised over the registry: a new recipe is covered here
without editing this file."""
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recipes
from benchmark.separate.core import separate
from recipes import config
from recipes.checkpoint import load_model, save_model
from recipes.losses import NegSISDR, build_loss
from recipes.train import train

ALL = recipes.names()


def build(name, profile="smoke", sample_rate=8000):
    cfg = config.resolve(name, profile)
    args = config.model_args(name, sample_rate, cfg["model"])
    return recipes.get(name).build(**args), args


def read_log(run_dir):
    with open(run_dir / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ALL)
def test_one_name_end_to_end(name):
    recipe = recipes.get(name)
    assert recipe.folder.name == name
    assert recipe.folder.parent.name == "recipes"
    assert (recipe.folder / "config.yaml").exists()
    assert recipe.description
    from recipes.system import SeparationSystem
    assert issubclass(recipe.system_class(), SeparationSystem)  # a mistyped "module:Class" fails here


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("length", [777, 8001])
def test_forward_shape_on_odd_lengths(name, length):
    torch.manual_seed(0)
    model, _ = build(name)
    est = model.eval()(torch.randn(2, length))
    assert est.shape == (2, 2, length)
    assert torch.isfinite(est).all()


@pytest.mark.parametrize("name", ALL)
def test_declared_minimum_length_is_accepted_and_shorter_inputs_are_padded(name):
    """register(min_length=...): the model takes exactly that many samples back to as many, and
    separate's path zero-pads one sample fewer to it and crops the result."""
    torch.manual_seed(0)
    model = build(name)[0].eval()
    n = model.min_length
    x = 0.3 * torch.randn(2, n)
    with torch.no_grad():
        est = model(x)
        assert est.shape == (2, 2, n) and torch.isfinite(est).all()
        if n > 1:
            short = x[0, :-1]
            padded = model(F.pad(short[None], (0, 1)))[0, :, :-1].numpy()
            np.testing.assert_array_equal(separate(model, short.numpy()), padded)
    assert separate(model, x[0, :1].numpy()).shape == (2, 1)


@pytest.mark.parametrize("name", ALL)
def test_outputs_on_the_declared_stride_grid_keep_the_input_length(name):
    """register(frame_stride=...): whole numbers of strides in (the lengths chunked separation
    cuts at) give as many samples out, and chunks started on the grid cover the input exactly."""
    torch.manual_seed(0)
    model = build(name)[0].eval()
    stride = model.frame_stride
    first = -(-model.min_length // stride) * stride
    with torch.no_grad():
        for length in (first, first + stride, first + 7 * stride):
            assert model(torch.randn(1, length)).shape == (1, 2, length)
    mix = (0.3 * np.random.default_rng(0).standard_normal(first + 40 * stride + 3)).astype(np.float32)
    chunked = separate(model, mix, chunk=len(mix) // 3 + 1, context=2 * first, fade=stride)
    assert chunked.shape == (2, len(mix)) and np.isfinite(chunked).all()


@pytest.mark.parametrize("name", ALL)
def test_find_unused_parameters_declaration_matches_a_training_step(name):
    """register(find_unused_parameters=...): DDP needs it exactly when one training step (the
    recipe's own system, its smoke loss) leaves some parameter without a gradient."""
    recipe = recipes.get(name)
    torch.manual_seed(0)
    model = build(name)[0].train()
    loss_func = build_loss(config.resolve(name, "smoke")["loss"], 8000)
    system = recipe.system_class()(model, None, loss_func, None)
    mix, sources = torch.randn(2, 4000), torch.randn(2, 2, 4000)
    system.common_step((mix, sources), 0, train=False).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if recipe.find_unused_parameters:
        assert unused, f"{name} declares find_unused_parameters but a training step uses every parameter"
    else:
        assert not unused, f"{name}: a training step leaves {unused[:3]} unused; declare find_unused_parameters"


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_parameters(name):
    torch.manual_seed(0)
    model, _ = build(name)
    mix, sources = torch.randn(2, 4000), torch.randn(2, 2, 4000)
    NegSISDR()(model.train()(mix), sources).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_identical(name, tmp_path):
    torch.manual_seed(0)
    model, args = build(name)
    model.eval()
    save_model(tmp_path / "m.pt", model, name, args, 8000, note="test")
    loaded, payload = load_model(tmp_path / "m.pt")
    x = torch.randn(1, 3001)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert payload["recipe"] == name and payload["model_args"] == args
    assert payload["meta"]["note"] == "test" and "torch" in payload["meta"]["versions"]


@pytest.mark.parametrize("name", ALL)
def test_cpu_profile_builds_and_is_larger_than_smoke(name):
    smoke, _ = build(name, "smoke")
    cpu, _ = build(name, "cpu")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(cpu) > count(smoke)


@pytest.mark.parametrize("name", ALL)
def test_smoke_training_learns_and_resumes(name, tiny_data, tmp_path):
    first = train(name, tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=3"], progress=False)
    run = first["run_dir"]
    assert run == tmp_path / name / "smoke"
    log = read_log(run)
    assert [int(r["epoch"]) for r in log] == [0, 1, 2]
    assert first["metrics"]["best_val_loss"] < float(log[0]["val_loss"]), "validation loss did not go down"
    assert first["card"]["status"] == "complete" and (run / "best.pt").exists() and (run / "last.ckpt").exists()

    again = train(name, tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=3"], progress=False)
    assert again["status"] == "skipped"

    more = train(name, tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=5"], resume=True,
                 progress=False)
    log = read_log(run)
    assert [int(r["epoch"]) for r in log] == [0, 1, 2, 3, 4], "resume restarted instead of continuing"
    assert int(log[3]["step"]) > int(log[2]["step"])
    assert more["card"]["epochs"] == 5


def test_loading_and_running_models_never_imports_lightning(tmp_path):
    """Separation and evaluation workers load every recipe's model without PyTorch Lightning,
    whose import costs seconds per worker process."""
    import subprocess
    import sys
    for name in ALL:
        model, args = build(name)
        save_model(tmp_path / f"{name}.pt", model, name, args, 8000)
    code = ("import sys, torch; from benchmark.scoring import workers as eval_workers; from recipes.checkpoint import load_model\n"
            f"for name in {ALL!r}:\n"
            f"    load_model('{tmp_path}/' + name + '.pt')[0](torch.zeros(1, 4000))\n"
            "print(sorted(m for m in sys.modules if 'lightning' in m))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
