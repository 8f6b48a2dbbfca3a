"""gpuad/apps: the conventions every application follows (see gpuad/apps/__init__.py)."""
import argparse
import ast
import importlib
import os
import types

import pytest

import gpuad.apps
from gpuad.apps import addition, demo, digits, train

APPS = os.path.dirname(gpuad.apps.__file__)
SOURCES = sorted(f for f in os.listdir(APPS) if f.endswith(".py"))

#: what an application may import from gpuad: the package and its public submodules
PUBLIC = {"gpuad", "gpuad.nn", "gpuad.nn.initializers", "gpuad.optimizers", "gpuad.random",
          "gpuad.nest", "gpuad.devices", "gpuad.data"}


def test_every_task_is_a_module_of_gpuad_apps_with_run():
    assert set(train.TASKS) == {"digits", "addition"}
    for name, module in train.TASKS.items():
        assert module.__name__ == f"gpuad.apps.{name}"
        assert callable(module.run)
    for module in (train, demo):  # the subcommands
        assert callable(module.run) and callable(module.add_arguments)


def test_train_dispatches_to_the_task_module(monkeypatch):
    seen = []
    monkeypatch.setattr(addition, "run", lambda args: seen.append(args.task) or 7)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--task", "addition"])
    assert train.run(args) == 7 and seen == ["addition"]


def test_addition_rejects_a_bad_value_with_status_2(capsys):
    args = argparse.Namespace(task="addition", steps=0, batch_size=None, lr=None, digits=None,
                              device="cpu")
    assert addition.run(args) == 2
    assert "--steps" in capsys.readouterr().err


@pytest.mark.parametrize("source", SOURCES)
def test_apps_use_only_the_public_api(source):
    with open(os.path.join(APPS, source)) as f:
        tree = ast.parse(f.read(), source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # a sibling in gpuad/apps, nothing else
                siblings = {f[:-3] for f in SOURCES}
                assert node.level == 1 and (
                    node.module in siblings if node.module
                    else all(a.name in siblings for a in node.names)), (
                    f"{source}:{node.lineno}: reaches outside gpuad/apps")
                continue
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                    and node.args[1].value.startswith("_") and not node.args[1].value.startswith("__")):
                raise AssertionError(f"{source}:{node.lineno}: private attribute {node.args[1].value!r}")
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                assert isinstance(node.value, ast.Name) and node.value.id == "self", (
                    f"{source}:{node.lineno}: private attribute .{node.attr}")
            continue
        if not any(n == "gpuad" or n.startswith("gpuad.") for n in names):
            continue  # numpy, the standard library, ...
        if isinstance(node, ast.Import):
            assert all(n in PUBLIC for n in names), f"{source}:{node.lineno}: imports {names}"
            continue
        assert node.module in PUBLIC, f"{source}:{node.lineno}: imports {node.module}"
        parent = importlib.import_module(node.module)
        for alias in node.names:
            assert not alias.name.startswith("_"), f"{source}:{node.lineno}: imports {alias.name}"
            if isinstance(getattr(parent, alias.name), types.ModuleType):  # ``from gpuad import nn``
                assert f"{node.module}.{alias.name}" in PUBLIC, (
                    f"{source}:{node.lineno}: imports {node.module}.{alias.name}")


# -- every flag of every command is checked before anything runs ------------------------

#: (command line before the flag, flag, a value it must refuse)
BAD_VALUES = [
    *[("train", "--lr", v) for v in ("nan", "inf", "-inf", "0", "-0.1", "1e999", "x", "")],
    *[("train", "--epochs", v) for v in ("0", "-1", "2.5", "x")],
    *[("train", "--batch-size", v) for v in ("0", "-32", "1e3")],
    *[("train", "--samples", v) for v in ("0", "-1", "1438", "100000")],
    *[("train", "--seed", v) for v in ("-1", "1.5", str(2**32), "x")],
    ("train", "--device", "nonesuch"), ("train", "--device", ""),
    ("train", "--steps", "10"), ("train", "--digits", "3"),   # --task addition's, not digits'
    *[("train --task addition", "--steps", v) for v in ("0", "-5", "nan")],
    *[("train --task addition", "--digits", v) for v in ("0", "19", "-2")],
    *[("train --task addition", "--lr", v) for v in ("nan", "inf", "0")],
    ("train --task addition", "--batch-size", "0"), ("train --task addition", "--seed", "-3"),
    ("train --task addition", "--epochs", "1"), ("train --task addition", "--samples", "10"),
    ("train --task addition", "--out", "somewhere"),        # --task digits' flags
    *[("demo", "--steps", v) for v in ("0", "-1", "1.5")],
    *[("demo", "--lr", v) for v in ("nan", "inf", "0", "-0.05")],
    ("demo", "--device", "nonesuch"),
    *[("bench", "--workloads", v) for v in ("", ",", "nope", "overhead,,mlp128", "overhead,overhead")],
    *[("bench", "--libs", v) for v in ("", "nonesuch", "torch", "gpuad,gpuad", "gpuad,")],
    *[("bench", "--target-seconds", v) for v in ("inf", "nan", "0", "-1", "-inf")],
    *[("bench", "--repeats", v) for v in ("0", "-1", "2.5")],
    ("bench", "--warmup", "-1"), ("bench", "--device", "tpu"),
    *[("kernels", "--jobs", v) for v in ("0", "-1", "2.5", "x")],
]


@pytest.fixture
def nothing_runs(monkeypatch, tmp_path):
    """``python -m gpuad`` in this process, in an empty folder, with every command's
    ``run`` replaced by a recorder: a refused command line must never get there."""
    import gpuad.bench
    from gpuad.devices import kernels_command
    started = []
    for module in (train, demo, gpuad.bench, addition, digits, kernels_command):
        monkeypatch.setattr(module, "run", lambda args, m=module: started.append(m.__name__) or 0)
    monkeypatch.chdir(tmp_path)
    return started


@pytest.mark.parametrize("command, flag, value", BAD_VALUES)
def test_a_bad_value_of_any_flag_is_a_usage_error_before_anything_runs(
        command, flag, value, nothing_runs, tmp_path, capsys):
    from gpuad.__main__ import main
    argv = command.split() + [f"{flag}={value}"]
    if argv[0] == "bench" or argv == ["train", f"{flag}={value}"]:
        argv += ["--out", str(tmp_path / "out")]   # would be created by a run
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.startswith("usage: python -m gpuad " + argv[0]), err
    assert f"argument {flag}" in err, err
    assert nothing_runs == [], "a refused command line started the command"
    assert list(tmp_path.iterdir()) == [], "a refused command line wrote something"


@pytest.mark.parametrize("argv", [["train"], ["train", "--task", "addition", "--steps", "1"],
                                  ["demo", "--steps", "1"], ["bench", "--quick"]])
def test_good_values_reach_the_command(argv, nothing_runs, tmp_path):
    from gpuad.__main__ import main
    assert main(argv + ["--device", "cpu"]) == 0
    assert nothing_runs == [{"train": "gpuad.apps.train", "demo": "gpuad.apps.demo",
                             "bench": "gpuad.bench"}[argv[0]]]


@pytest.mark.parametrize("module, values, refused", [
    (digits, {"lr": float("nan"), "epochs": 1}, "--lr"), (digits, {"epochs": 0}, "--epochs"),
    (digits, {"samples": -5}, "--samples"), (addition, {"steps": 0}, "--steps"),
    (addition, {"lr": float("inf")}, "--lr"), (demo, {"steps": 1, "lr": float("nan")}, "--lr"),
    (demo, {"steps": -1, "lr": 0.05}, "--steps"),
])
def test_run_refuses_a_namespace_built_in_code_the_same_way(module, values, refused, tmp_path,
                                                            capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert module.run(argparse.Namespace(device="cpu", **values)) == 2
    assert f"argument {refused}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_that_diverges_says_so_and_fails(capsys):
    assert demo.run(argparse.Namespace(steps=20, lr=10.0, device="cpu")) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err


def test_addition_that_diverges_says_so_and_fails(capsys):
    args = argparse.Namespace(task="addition", steps=3, lr=1e30, digits=1, batch_size=4,
                              device="cpu", seed=None)
    assert addition.run(args) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err
