import os
import shutil
import subprocess
import sys

import pytest

from ktemplate import cli, templates

NO_TENSORFLOW = """
import sys
from ktemplate import cli
code = cli.main({argv!r})
assert "tensorflow" not in sys.modules, "tensorflow was imported"
assert "keras" not in sys.modules, "keras was imported"
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["list"], ["--help"], ["train", "--help"]])
def test_help_and_list_do_not_import_tensorflow(argv):
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "image_cnn" in result.stdout or "usage" in result.stdout


def test_list_shows_templates_and_default_dataset(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "image_cnn" in out and "default dataset: digits" in out


def test_unknown_template(capsys, tmp_path):
    assert cli.main(["train", "imag_cnn", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown template 'imag_cnn'" in err and "image_cnn" in err
    assert not list(tmp_path.iterdir())


def test_unknown_config_key_lists_allowed_keys(capsys, tmp_path):
    code = cli.main(["train", "image_cnn", "--set", "filterz=8", "--output-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'filterz'" in err and "filters" in err
    assert not list(tmp_path.iterdir())


def test_wrong_type_names_the_key(capsys, tmp_path):
    code = cli.main(
        ["train", "image_cnn", "--set", "batch_size=many", "--output-dir", str(tmp_path)]
    )
    assert code == 2
    assert "'batch_size' expects an integer" in capsys.readouterr().err
    code = cli.main(["train", "image_cnn", "--set", "epochs=many", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "'epochs' expects int | 'auto', got 'many'" in capsys.readouterr().err


def test_missing_dataset_directory_leaves_nothing(capsys, tmp_path):
    code = cli.main(
        [
            "train",
            "image_cnn",
            "--dataset",
            f"dir:{tmp_path / 'nope'}",
            "--output-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 2
    assert "Dataset folder not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.json"))


@pytest.mark.parametrize("name", templates.BUILTIN)
def test_show_reads_every_builtin_config_without_tensorflow(name):
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW.format(argv=["show", name])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dataset = " in result.stdout and "seed = " in result.stdout


@pytest.mark.parametrize(
    "argv, error",
    [
        (["train", "image_cnn", "--set", "epochs=0"], "'epochs' must be > 0"),
        (["tune", "tabular_mlp", "--set", "nope=1"], "nope"),
        (["check", "text_transformer", "--set", "embeddings=/nope"], "'embeddings' is '/nope'"),
        (["train", "timeseries_lstm", "--config", "CONFIG"], "'horizon' must be > 0"),
    ],
)
def test_config_errors_come_before_tensorflow_is_imported(argv, error, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"horizon": 0}')
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    script = NO_TENSORFLOW.format(argv=argv)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert error in result.stderr and "ktemplate: error:" in result.stderr


def test_show_prints_fields_with_comments(capsys):
    assert cli.main(["show", "image_cnn"]) == 0
    out = capsys.readouterr().out
    assert "filters = 32" in out and "filters in the first block" in out


def test_export_of_a_non_run_folder(capsys, tmp_path):
    assert cli.main(["export", str(tmp_path)]) == 2
    assert "not a ktemplate run folder" in capsys.readouterr().err


def test_predict_on_a_non_export_folder(capsys, tmp_path):
    assert cli.main(["predict", str(tmp_path), "x.png"]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err


def test_new_copies_a_template_with_names_changed(tmp_path):
    (tmp_path / "image_cnn.py").write_text((templates.TEMPLATES_DIR / "image_cnn.py").read_text())
    path = templates.copy_template("digits_v2", "image_cnn", tmp_path)
    text = path.read_text()
    header, description, *rest = text.splitlines()
    # A header line records the source; the description line is marked for the user to edit.
    assert header.startswith("# Made with `ktemplate new digits_v2 --from image_cnn` (ktemplate ")
    assert description.startswith('"""TODO: say in this line what digits_v2 does (a copy of ')
    assert templates.describe("digits_v2", tmp_path)["summary"].startswith("TODO: ")
    body = "\n".join(rest)
    assert 'NAME = "digits_v2"' in body and "image_cnn" not in body
    # Its main() says how to run the file itself: the copy is not in the installed package.
    assert "ktemplate.templates.digits_v2" not in text
    assert f"python {path.resolve()}" in text
    assert templates.names(tmp_path) == ["image_cnn", "digits_v2"]
    assert templates.describe("digits_v2", tmp_path)["dataset"] == "digits"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_v2.py", "image_cnn.py"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user makes


def test_a_copy_runs_as_a_script_from_any_folder(tmp_path):
    folder = tmp_path / "project" / "templates"
    folder.mkdir(parents=True)
    path = templates.copy_template("digits_v3", "image_cnn", folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, str(path), "--set", "epochs=0"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # It found itself (the error is about the value, not an unknown template).
    assert result.returncode == 2 and "'epochs' must be > 0" in result.stderr


def test_new_refuses_existing_names_and_bad_identifiers(tmp_path, capsys):
    (tmp_path / "image_cnn.py").write_text("NAME = 'image_cnn'\n")
    with pytest.raises(FileExistsError, match="already exists"):
        templates.copy_template("image_cnn", "image_cnn", tmp_path)
    for bad in ("my-task", "2task", "class", "_private"):
        with pytest.raises(ValueError, match="not a valid Python identifier|underscore"):
            templates.copy_template(bad, "image_cnn", tmp_path)
    with pytest.raises(ValueError, match="Unknown template 'nope' after --from"):
        templates.copy_template("fresh", "nope", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_cnn.py"]
    # Through the CLI, onto the real templates folder: refused, nothing written.
    assert cli.main(["new", "image_cnn", "--from", "image_cnn"]) == 2
    assert "already exists" in capsys.readouterr().err


CUINIT = (
    "E0000 00:00:1796224350.445846    4792 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)


def test_startup_noise_is_told_from_real_errors():
    from ktemplate import startup

    banner = "WARNING: All log messages before absl::InitializeLog() is called are written"
    onednn = "I0000 00:00:1796224348.138897    4792 port.cc:153] oneDNN custom operations are on."
    assert startup.is_noise(banner, False) and startup.is_noise(onednn, True)
    assert startup.is_noise(CUINIT, has_nvidia_driver=False)
    assert not startup.is_noise(CUINIT, has_nvidia_driver=True)  # a GPU machine: a real problem
    assert not startup.is_noise("E0000 00:00:1.0 1 op_kernel.cc:1] Not found: libfoo.so", False)
    assert not startup.is_noise("Traceback (most recent call last):", False)
    assert startup.is_noise("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", False)
    nodedef = (
        "E0000 00:00:1796540313.462283   16734 node_def_util.cc:682] NodeDef mentions attribute "
        "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...>"
    )
    assert startup.is_noise(nodedef, False)
    assert not startup.is_noise("E0000 00:00:1.0 1 node_def_util.cc:1] NodeDef missing", False)


def test_tensorflow_startup_banners_are_hidden_unless_verbose(tmp_path):
    from ktemplate import startup

    def stderr(*argv):
        result = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        return result.stderr

    quiet = stderr("-m", "ktemplate", "show", "image_cnn")
    verbose = stderr("-m", "ktemplate", "--verbose", "show", "image_cnn")
    driver = shutil.which("nvidia-smi") is not None
    hidden = [line for line in verbose.splitlines() if startup.is_noise(line, driver)]
    assert all(line not in quiet for line in hidden)
    for noise in ("absl::InitializeLog", "oneDNN", "cudart_stub", "cuInit"):
        if noise != "cuInit" or not driver:
            assert noise not in quiet, quiet


def test_noise_after_start_up_is_filtered_for_the_whole_process():
    # tf.data prints a NodeDef line whenever it builds a graph; real lines and a traceback at
    # exit still come through.
    code = """
import os
from ktemplate import startup
startup.filter_process_stderr()
os.write(2, b"E0000 00:00:1.0 1 node_def_util.cc:682] NodeDef mentions attribute "
            b"use_unbounded_threadpool which is not in the op definition\\n")
os.write(2, b"a real error line\\n")
raise RuntimeError("the last words")
"""
    env = {k: v for k, v in os.environ.items() if k != "KTEMPLATE_VERBOSE"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 1
    assert "NodeDef" not in result.stderr
    assert "a real error line" in result.stderr
    assert "RuntimeError: the last words" in result.stderr
