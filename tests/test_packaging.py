"""The installed package exposes the losses, from an editable install and from a built wheel."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT_CHECK = (
    "import ppl_torchrl, ppl_torchrl.objectives as o; "
    "from ppl_torchrl import PartialOTLoss; "
    "assert PartialOTLoss is o.PartialOTLoss and o.ReBRACLoss.__name__ == 'ReBRACLoss'; "
    "import importlib.util as u; assert u.find_spec('objectives') is None, 'generic objectives installed'; "
    "print(ppl_torchrl.__file__)"
)


def _run(cmd, cwd, env=None):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_installed_package_exposes_losses(tmp_path):
    """The environment the tests run in (the README's editable install) resolves the objectives/ folder."""
    res = _run([sys.executable, "-c", IMPORT_CHECK], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve().is_relative_to(ROOT), res.stdout


def _package_folders():
    folders = {"ppl_torchrl.objectives"}
    for init in (ROOT / "ppl_torchrl").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        folders.add(".".join(rel.parts))
    return folders


def test_wheel_contains_every_package_and_imports(tmp_path):
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                str(ROOT)], cwd=tmp_path)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"building needs setuptools/wheel: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("ppl_torchrl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("__init__.py")}
    assert _package_folders() <= packages, f"missing from the wheel: {_package_folders() - packages}"
    assert "ppl_torchrl/objectives/partial_ot.py" in names
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ppl_torchrl").rglob("*.pt")}
    assert shipped <= set(names), f"package data missing from the wheel: {shipped - set(names)}"
    assert not any(n.startswith("objectives/") for n in names)
    target = tmp_path / "site"
    res = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    # Only the wheel's copy is importable: the editable finder is disabled with -S + explicit paths.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), *_site_packages_without_editable()]))
    res = _run([sys.executable, "-S", "-c", IMPORT_CHECK], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert Path(res.stdout.strip()).resolve().is_relative_to(target.resolve()), res.stdout


def _site_packages_without_editable():
    import site

    return [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
