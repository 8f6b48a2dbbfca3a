"""gpuad/apps: the conventions every application follows (see gpuad/apps/__init__.py)."""
import argparse
import ast
import importlib
import os
import types

import pytest

import gpuad.apps
from gpuad.apps import addition, demo, train

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
