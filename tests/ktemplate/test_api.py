"""The Python API, and templates made with `ktemplate new` in a user's own project."""

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import ktemplate
from ktemplate import cli, templates

TINY = dict(epochs=1, filters=8, conv_blocks=1, members=1, baseline=False, verbose=0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder, the current directory, with its own unrelated `templates/`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(templates.PROJECT_DIR_ENV, raising=False)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "helpers.py").write_text("def page():\n    return '<html>'\n")
    return tmp_path


def test_new_writes_into_the_project_and_the_copy_trains_exports_and_lists(project, capsys):
    assert cli.main(["new", "my_digits", "--from", "image_cnn"]) == 0
    assert "ktemplate train my_digits" in capsys.readouterr().out
    source = (project / "templates" / "my_digits.py").read_text()
    assert 'NAME = "my_digits"' in source and "from ktemplate.pipelines import" in source
    assert templates.names()[-1] == "my_digits" and "helpers" not in templates.names()
    assert cli.main(["list"]) == 0
    assert "my_digits" in capsys.readouterr().out

    run = ktemplate.train("my_digits", **TINY)
    assert run.template == "my_digits" and run.status == "finished"
    assert run.path.resolve().parent == (project / "saved_models" / "my_digits").resolve()
    assert set(run.history["train"]) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert len(run.history["train"]["loss"]) == 1
    assert 0 <= run.metrics["test_accuracy"] <= 1
    assert run.manifest["template"] == "my_digits"
    # A fresh process in the project finds the template by name, as `ktemplate export` does.
    exported = subprocess.run(
        [sys.executable, "-m", "ktemplate", "export", str(run.path), "--output", "again"],
        capture_output=True, text=True, cwd=project, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (project / "again" / "saved_model.pb").is_file()
    again = ktemplate.load_run(run.path)
    assert again.metrics == run.metrics and again.model.count_params() == run.model.count_params()


def test_new_with_dir_and_the_names_it_refuses(project, capsys, monkeypatch):
    assert cli.main(["new", "elsewhere", "--from", "image_cnn", "--dir", "lib/tpl"]) == 0
    out = capsys.readouterr().out
    assert (project / "lib" / "tpl" / "elsewhere.py").is_file()
    assert "KTEMPLATE_TEMPLATES_DIR=" in out  # not found from here without it
    assert "elsewhere" not in templates.names()
    monkeypatch.setenv(templates.PROJECT_DIR_ENV, str(project / "lib" / "tpl"))
    assert "elsewhere" in templates.names()

    for name, message in (
        ("json", "name of an installed module"),  # would shadow the standard library's json
        ("image_cnn", "already exists"),  # a built-in
        ("elsewhere", "already exists"),
    ):
        assert cli.main(["new", name, "--from", "image_cnn"]) == 2
        assert message in capsys.readouterr().err


def test_api_errors_are_clear_and_nothing_is_written(project):
    with pytest.raises(ValueError, match="Unknown config key 'filterz'"):
        ktemplate.train("image_cnn", filterz=8)
    with pytest.raises(ValueError, match="Unknown template 'imag_cnn'"):
        ktemplate.train("imag_cnn")
    with pytest.raises(ValueError, match="drop the overrides"):
        ktemplate.train("image_cnn", resume=project / "x", epochs=2)
    assert not (project / "saved_models").exists()


def test_importing_ktemplate_does_not_import_tensorflow():
    code = "import sys, ktemplate; print(json.dumps('tensorflow' in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True
    )
    assert json.loads(result.stdout) is False
    assert callable(ktemplate.export) and callable(ktemplate.train)


def test_a_regular_install_writes_new_templates_into_the_users_project(tmp_path):
    # A non-editable install into a fresh virtual environment (the heavy dependencies come from
    # this interpreter's site-packages), used from a project folder elsewhere.
    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("needs the git checkout to copy the package from")
    for name in tracked.stdout.splitlines():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python, ktemplate_cli = venv / "bin" / "python", venv / "bin" / "ktemplate"
    # The new environment sees this interpreter's packages, whether it is a system interpreter
    # or itself a virtual environment (whose packages a --system-site-packages venv would not
    # see): plain path lines, so this environment's own .pth files (an editable install of the
    # checkout among them) stay out.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    outer = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (Path(purelib) / "outer_site_packages.pth").write_text("\n".join(outer) + "\n")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*install, "--no-index", source], check=True, capture_output=True)
    where = subprocess.run(
        [python, "-c", "import ktemplate.templates as t; print(t.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    installed = Path(where.strip()).parent
    assert venv in installed.parents  # the installed copy, not this checkout

    project = tmp_path / "project"
    project.mkdir()

    def run(*argv):
        result = subprocess.run([ktemplate_cli, *argv], capture_output=True, text=True,
                                cwd=project, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    run("new", "my_task", "--from", "image_cnn")
    assert (project / "templates" / "my_task.py").is_file()
    assert not (installed / "my_task.py").exists()  # never into site-packages
    assert "my_task" in run("list")
    fast = ["epochs=1", "members=1", "baseline=false", "conv_blocks=1", "filters=8"]
    run("train", "my_task", *[arg for value in fast for arg in ("--set", value)])
    (run_dir,) = (project / "saved_models" / "my_task").iterdir()
    assert (run_dir / "export" / "saved_model.pb").is_file()
