"""README's Python API section, run as written (see lines.py)."""

import numpy as np

from tests.helpers.readme import blocks, section


def test_python_api_section_runs_as_written(project):
    (code,) = blocks(section("### Python API (notebooks, scripts)"), "python")
    # `pixels` stands for the caller's images; `<run-id>` for the run the block trained.
    code = code.replace('"saved_models/image_cnn/<run-id>"', "run.path")
    pixels = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 1), dtype=np.uint8)
    namespace = {"pixels": pixels}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    assert namespace["run"].metrics["test_accuracy"] >= 0
    assert namespace["champion"].sweep_dir.is_dir()
    assert (project.path / "exports" / "digits" / "model.tflite").is_file()
