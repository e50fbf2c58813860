import os
import subprocess
import sys

NOTEBOOK = """
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from pathlib import Path
from ktemplate import forecasting, reports

backend = matplotlib.get_backend()
plt.figure()  # the caller's own figure, as in a notebook
out = Path(sys.argv[1])
reports.plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], out / "cm.png")
labels = np.array([0, 1, 0, 1])
reports.plot_image_predictions(np.zeros((4, 8, 8, 1)), labels, np.eye(2)[[0, 0, 1, 1]], ["a", "b"],
                               out / "grid.png")
assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())
assert plt.get_fignums() == [1], plt.get_fignums()
assert (out / "cm.png").stat().st_size > 1000 and (out / "grid.png").stat().st_size > 1000
"""


def test_plots_leave_the_callers_matplotlib_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + NOTEBOOK, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "svg"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
