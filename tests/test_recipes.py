"""Every registered recipe, parametrised over the registry: a new recipe is covered here
without editing this file."""
import csv

import pytest
import torch

import recipes
from recipes import config
from recipes.checkpoint import load_model, save_model
from recipes.losses import NegSISDR
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
