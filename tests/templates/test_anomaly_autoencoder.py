import json

import keras_tuner
import numpy as np
import pytest
from ktemplate.pipelines import novelty
from ktemplate.templates import anomaly_autoencoder as aa

from ktemplate import baselines, cli, run
from ktemplate import files as files_lib
from tests.helpers.fresh import serve_in_fresh_process
from tests.helpers.images import write_png

FAST = dict(epochs=3, early_stopping_patience=0, baseline=False)

SERVE = """
import json, sys
sys.modules["ktemplate"] = None  # importing the project must fail here
import numpy as np
import tensorflow as tf

folder, inputs = sys.argv[1], np.load(sys.argv[2])
serve = tf.saved_model.load(folder).signatures["serve"]
name = list(serve.structured_input_signature[1])[0]
out = serve(**{name: tf.constant(inputs)})
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
"""


def test_search_space_defaults_equal_config():
    config = aa.Config(bottleneck=16)  # auto starts the search at its default width
    assert aa.search_space(keras_tuner.HyperParameters(), config) == config
    custom = aa.Config(bottleneck=12, hidden=48, input_noise=0.2)
    assert aa.search_space(keras_tuner.HyperParameters(), custom) == custom


def test_digits_one_class_protocol():
    examples = aa.load_examples(aa.Config(normal_class="3"))
    assert examples.kind == "image" and examples.x["train"].shape[1:] == (8, 8, 1)
    # Train holds normal examples only; validation and test hold all ten digits (validation's
    # anomalies only pick the classical baseline: training and the threshold see its normals).
    assert examples.anomaly["train"].sum() == 0
    assert 0.85 < examples.anomaly["val"].mean() < 0.95
    test = examples.anomaly["test"]
    assert 0.85 < test.mean() < 0.95 and len(test) == 359
    with pytest.raises(ValueError, match="classes are 0..9"):
        aa.load_examples(aa.Config(normal_class="ten"))


@pytest.mark.parametrize("score", ["mse", "ssim"])
def test_train_calibrates_the_threshold_and_the_export_serves_it(tmp_path, score):
    run_dir = run.train(aa, aa.Config(score=score, **FAST), output_dir=tmp_path, verbose=0)
    spec = files_lib.read_json(run_dir / "spec.json")
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert spec["threshold"] > 0 and spec["validation_normals"] == spec["sizes"]["val"]
    for key in ("test_roc_auc", "test_average_precision", "test_recall", "test_fpr"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["test_roc_auc"] > 0.6  # even 3 epochs tell zeros from the other digits
    assert (run_dir / "scores.png").stat().st_size > 0
    assert (run_dir / "most_anomalous.png").stat().st_size > 0
    manifest = files_lib.read_json(run_dir / "export" / "manifest.json")
    assert manifest["threshold"] == spec["threshold"] and manifest["input"]["kind"] == "image"
    assert ("SSIM" in manifest["outputs"]["score"]) == (score == "ssim")

    examples = aa.load_examples(aa.Config())
    pixels = examples.x["test"][:6].astype("uint8")
    np.save(tmp_path / "pixels.npy", pixels)
    served = serve_in_fresh_process(SERVE, tmp_path, run_dir / "export", tmp_path / "pixels.npy")
    model = run.load_best_model(run_dir)
    expected = aa.scores(model, spec, pixels.astype("float32")).numpy()
    np.testing.assert_allclose(served["score"], expected, rtol=1e-5, atol=1e-7)
    assert served["is_anomaly"] == (expected > spec["threshold"]).tolist()
    assert np.asarray(served["reconstruction"]).shape == (6, 8, 8, 1)


def test_the_threshold_flags_the_target_share_of_validation_normals():
    class Data:
        spec = {"target_fpr": 0.1, "mean": [0.0], "std": [1.0]}
        val = [(np.arange(100, dtype="float32").reshape(100, 1), None)]

    class Zero:  # reconstructs everything as 0: the score is the squared input
        def __call__(self, x, training=False):
            return x * 0.0

    found = aa.calibrate(Zero(), Data())
    scores = np.arange(100.0) ** 2
    # Rank round(101 * 0.9) = 91: 9 of the 100 normals lie above it, a new one with p 10/101.
    assert found["threshold"] == 90.0**2 and found["expected_fpr"] == pytest.approx(10 / 101, 1e-3)
    assert (scores > found["threshold"]).mean() == 0.09
    assert "warnings" not in found

    # Ten normals cannot promise 0.05: the highest score is the threshold, and a warning says
    # what it does promise (1/11) and what to do.
    Data.spec = {**Data.spec, "target_fpr": 0.05}
    Data.val = [(np.arange(10, dtype="float32").reshape(10, 1), None)]
    found = aa.calibrate(Zero(), Data())
    assert found["threshold"] == 81.0 and found["expected_fpr"] == pytest.approx(1 / 11, 1e-3)
    assert "flags about 0.091 of normal examples" in found["warnings"][0]


def test_tabular_csv_with_labels_trains_and_predicts_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (80, 4))
    odd = rng.normal(4, 1, (15, 4))
    lines = ["a,b,c,d,state"]
    lines += [",".join(f"{v:.4f}" for v in row) + ",ok" for row in normal]
    lines += [",".join(f"{v:.4f}" for v in row) + ",broken" for row in odd]
    path = tmp_path / "sensors.csv"
    path.write_text("\n".join(lines) + "\n")
    config = aa.Config(
        dataset=f"csv:{path}",
        label_column="state",
        normal_class="ok",
        **{**FAST, "epochs": 20, "baseline": True},
    )
    examples = aa.load_examples(config)
    assert examples.kind == "features" and examples.names == ["a", "b", "c", "d"]
    # Anomalies split 1:2 between validation and test, as the normals do.
    assert examples.anomaly["val"].sum() == 5 and examples.anomaly["test"].sum() == 10
    run_dir = run.train(aa, config, output_dir=tmp_path / "runs", verbose=0)
    metrics = files_lib.read_json(run_dir / "metrics.json")
    assert metrics["test_roc_auc"] > 0.9  # four standard deviations away
    # Four detectors, picked on validation ROC AUC (never on test), compared with DeLong.
    baseline = metrics["baseline"]
    tried = baseline["settings"]["tried"]
    assert [t["method"] for t in tried] == [
        "PCA reconstruction error",
        "IsolationForest",
        "One-Class SVM",
        "5-nearest-neighbour distance",
    ]
    assert baseline["name"] == tried[baselines.pick(tried, "val_roc_auc")]["method"]
    assert baseline["comparison"]["test"] == "DeLong"
    assert baseline["comparison"]["n"] == 10  # the test anomalies, the rarer class
    by_name = baseline["test_roc_auc_by_name"]  # every detector's test figure, for reading
    assert len(by_name) == 4 and by_name[baseline["name"]] == baseline["test_roc_auc"]
    capsys.readouterr()
    assert cli.main(["predict", str(run_dir / "export"), str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 95 and rows[0]["input"] == f"{path}:1"
    assert sum(r["is_anomaly"] for r in rows[80:]) >= 12


def test_bad_tabular_inputs_are_clear_errors(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("a,kind,label\n" + "".join(f"{i},x{i},0\n" for i in range(20)))
    with pytest.raises(ValueError, match="not numeric"):
        aa.load_examples(aa.Config(dataset=f"csv:{path}"))
    path.write_text("a,label\n" + "".join(f"{i},1\n" for i in range(20)))
    with pytest.raises(ValueError, match=r"No row .* \(normal_class\); its values are 1"):
        aa.load_examples(aa.Config(dataset=f"csv:{path}"))
    with pytest.raises(ValueError, match="target_fpr"):
        aa.Config(target_fpr=1.5)
    with pytest.raises(FileNotFoundError, match="normal/ folder"):
        aa.load_examples(aa.Config(dataset=f"dir:{tmp_path}"))


def test_dir_normal_and_anomaly_folders(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        dark = rng.integers(0, 60, (20, 20, 1)).astype("uint8")
        write_png(tmp_path / "normal" / f"{i}.png", dark)
    for i in range(3):
        bright = rng.integers(180, 255, (20, 20, 1)).astype("uint8")
        write_png(tmp_path / "anomaly" / f"{i}.png", bright)
    examples = aa.load_examples(aa.Config(dataset=f"dir:{tmp_path}", image_size=16))
    assert examples.x["train"].shape[1:] == (16, 16, 1)
    assert examples.anomaly["train"].sum() == 0
    assert examples.anomaly["val"].sum() == 1 and examples.anomaly["test"].sum() == 2


def test_a_refit_champion_keeps_the_validation_normals_for_its_threshold(tmp_path):
    # A tune champion refits on train+validation; a template with `calibrate` keeps its
    # validation split out of that refit, so the threshold is set on unseen normals.
    rng = np.random.default_rng(1)
    lines = ["a,b,c"] + [",".join(f"{v:.4f}" for v in row) for row in rng.normal(0, 1, (60, 3))]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines) + "\n")
    config = aa.Config(dataset=f"csv:{path}", label_column="", **{**FAST, "epochs": 2})
    run_dir = run.train(aa, config, output_dir=tmp_path / "runs", verbose=0, refit=True)
    spec = files_lib.read_json(run_dir / "spec.json")
    assert spec["validation_normals"] == spec["sizes"]["val"] == 6
    assert files_lib.read_json(run_dir / "export" / "manifest.json")["threshold"] > 0


def test_ssim_score_is_zero_for_a_perfect_reconstruction_and_grows_with_the_damage():
    spec = {"mean": [0.0], "std": [255.0], "input_shape": [8, 8, 1], "score": "ssim"}
    assert novelty.ssim_filter_size(8, 8) == 5 and novelty.ssim_filter_size(64, 32) == 11
    pixels = aa.load_examples(aa.Config()).x["train"][:4].astype("float32")

    def reconstructs(noise):
        rng = np.random.default_rng(0)
        return lambda x, training=False: np.clip(
            x / 255.0 + noise * rng.normal(size=x.shape), 0.0, 1.0
        ).astype("float32")

    perfect, slight, heavy = (aa.scores(reconstructs(n), spec, pixels) for n in (0, 0.05, 0.5))
    np.testing.assert_allclose(perfect, 0.0, atol=1e-5)
    assert np.all(slight.numpy() > 1e-3) and np.all(heavy.numpy() > slight.numpy())
    with pytest.raises(ValueError, match="score=ssim compares images"):
        aa.load_data(aa.Config(dataset="breast_cancer", score="ssim"), 32)


def test_dir_colour_images_keep_their_colour_unless_told(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        green = np.zeros((20, 20, 3), "uint8")
        green[..., 1] = rng.integers(100, 200, (20, 20))
        write_png(tmp_path / "normal" / f"{i}.png", green)
    write_png(tmp_path / "anomaly" / "0.png", np.full((20, 20, 3), 150, "uint8"))
    examples = aa.load_examples(aa.Config(dataset=f"dir:{tmp_path}", image_size=16))
    assert examples.x["train"].shape[1:] == (16, 16, 3)
    assert examples.auto["resolved"]["channels"]["value"] == 3
    gray = aa.load_examples(aa.Config(dataset=f"dir:{tmp_path}", image_size=16, channels=1))
    assert gray.x["train"].shape[1:] == (16, 16, 1)
    assert "channels=1 turns the colour normal images gray" in gray.auto["warnings"][0]


def test_pca_baseline_keeps_fewer_components_than_features(tmp_path):
    # Six features whose variance is spread evenly: 90% of it needs all six components, which
    # would reconstruct every row exactly; the baseline keeps at most five.
    rng = np.random.default_rng(2)
    rows = np.r_[rng.normal(0, 1, (90, 6)), rng.normal(3, 1, (30, 6))]
    labels = ["n"] * 90 + ["a"] * 30
    lines = ["a,b,c,d,e,f,y"] + [
        ",".join(f"{v:.4f}" for v in row) + f",{y}" for row, y in zip(rows, labels, strict=True)
    ]
    path = tmp_path / "six.csv"
    path.write_text("\n".join(lines) + "\n")
    config = aa.Config(
        dataset=f"csv:{path}", label_column="y", normal_class="n", **{**FAST, "baseline": True}
    )
    data = run.load_data(aa, config)
    config = run.resolved_config(config, data.spec)
    model = aa.build_model(config, data.spec)
    data.spec["threshold"] = 1.0
    block = aa.baseline(model, data, config)
    (pca,) = [t for t in block["settings"]["tried"] if t["method"].startswith("PCA")]
    assert pca["val_roc_auc"] > 0.8  # a real score, not round-off
    assert block["settings"]["methods"]["PCA reconstruction error"].startswith("5 of 6 ")


def test_bottleneck_auto_is_narrower_than_the_features(tmp_path):
    spec = aa.load_data(aa.Config(dataset="breast_cancer"), 32).spec
    assert spec["resolved"]["bottleneck"]["value"] == 15  # half of 30 features
    rows = np.random.default_rng(0).normal(0, 1, (40, 6))
    path = tmp_path / "six.csv"
    path.write_text("a,b,c,d,e,f\n" + "\n".join(",".join(f"{v:.3f}" for v in r) for r in rows))
    spec = aa.load_data(aa.Config(dataset=f"csv:{path}", label_column=""), 32).spec
    assert spec["resolved"]["bottleneck"]["value"] == 3
    wide = aa.load_data(aa.Config(dataset=f"csv:{path}", label_column="", bottleneck=8), 32).spec
    assert any("not narrower than the 6 features" in w for w in wide["warnings"])
    assert aa.load_data(aa.Config(), 32).spec["resolved"]["bottleneck"]["value"] == 16  # images


def test_litert_and_onnx_files_give_the_saved_models_scores(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("ai_edge_litert")
    config = aa.Config(dataset="breast_cancer", **FAST)
    run_dir = run.train(
        aa, config, output_dir=tmp_path, verbose=0, export_formats=["litert", "onnx"]
    )
    formats = files_lib.read_json(run_dir / "export" / "manifest.json")["formats"]
    for fmt in ("litert", "onnx"):
        assert formats[fmt]["inputs"][0]["name"] == "features"
        for found in formats[fmt]["check"].values():  # checked in its runtime at export
            assert found["max_abs_diff"] <= found["tolerance"]
