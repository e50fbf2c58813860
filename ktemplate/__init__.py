"""ktemplate: Keras 3 application templates.

The Python API (`ktemplate.api`; TensorFlow is imported on the first call, not here):

    import ktemplate

    run = ktemplate.train("image_cnn", epochs=5)     # -> ktemplate.Run
    run.metrics, run.history, run.model, run.export_dir
    ktemplate.export(run, "exports/digits", formats=["litert", "onnx"])
    champion = ktemplate.tune("image_cnn", max_trials=4)
    ktemplate.load_run("saved_models/image_cnn/<run-id>")
"""

from ktemplate.api import Run, export, load_run, train, tune

__all__ = ["Run", "export", "load_run", "train", "tune"]
