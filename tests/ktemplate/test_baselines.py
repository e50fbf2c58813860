import json

import numpy as np
import pytest

from ktemplate import baselines, files, forecasting
from ktemplate.config import TrainingConfig


def test_mcnemar_counts_only_the_discordant_pairs():
    a = np.array([True] * 90 + [False] * 10)
    assert baselines.mcnemar_p(a, a) == 1.0
    b = a.copy()
    b[:12] = False  # b gets 12 more wrong, a none more: clearly different
    assert baselines.mcnemar_p(a, b) < 0.001
    c = a.copy()
    c[0], c[95] = False, True  # one each way: no evidence
    assert baselines.mcnemar_p(a, c) == 1.0


def fitted(name="SVC (RBF) on raw pixels", predicted=None):
    return {"name": name, "settings": {}, "notes": [], "predicted": predicted, "seconds": 0.1}


CONFIG = TrainingConfig(members=2)
TRIES = [
    baselines.Try("members", 2, "already in force: never printed"),
    baselines.Try("members", 4, "more models averaged"),
    baselines.Try("batch_norm", "true", "already in force too"),
]


def test_classification_verdicts_sentence_and_suggestions():
    labels = np.array([0, 1] * 100)
    good = labels.copy()
    bad = labels.copy()
    bad[:40] = 1 - bad[:40]  # 40 errors
    names = ["a", "b"]

    def compare(base, model):
        return baselines.compare_classification(
            fitted(predicted=base), labels, model, names, unit="images", config=CONFIG, tries=TRIES
        )

    worse = compare(good, bad)
    assert worse["comparison"]["verdict"] == "worse"
    assert worse["comparison"]["difference"] == pytest.approx(-0.2)
    assert worse["summary"].startswith("test accuracy 0.800 — SVC (RBF) on raw pixels 1.000 is")
    assert "McNemar p=" in worse["summary"] and "200 test images" in worse["summary"]
    # Only the suggestion whose value differs from the config's is kept.
    assert worse["suggestions"] == ["--set members=4 (more models averaged)"]
    assert baselines.console_lines(worse)[1] == "Try: --set members=4 (more models averaged)"
    better = compare(bad, good)
    assert better["comparison"]["verdict"] == "better" and "suggestions" not in better
    one_off = good.copy()
    one_off[0] = 1 - one_off[0]
    level = compare(one_off, good)
    assert level["comparison"]["verdict"] == "level"
    assert "no significant difference" in level["summary"]
    assert level["test_errors"] == 1 and level["test_accuracy"] == 0.995
    # Below the stated size there is no verdict, whatever the difference.
    small = baselines.compare_classification(
        fitted(predicted=good[:20]), labels[:20], bad[:20], names, unit="images", config=CONFIG
    )
    assert small["comparison"]["verdict"] == "small test set"
    assert "only 20 test images" in small["summary"] and "no verdict" in small["summary"]


def test_a_suggestion_must_name_a_config_field():
    with pytest.raises(ValueError, match="not a field"):
        baselines.suggestions(CONFIG, [baselines.Try("no_such_field", 1, "")])


def test_wilcoxon_needs_six_images_and_follows_the_means():
    model = np.array([30.0, 31.0, 29.5, 30.2, 28.0, 33.0])
    assert baselines.wilcoxon_p(model, model - 0.5) == pytest.approx(0.03125)
    assert baselines.wilcoxon_p(model[:2], model[:2] - 0.5) == 0.5  # two images: no evidence
    # Ranks favour the model (5 small wins) but one large loss makes its mean lower.
    mixed = model + np.array([0.1, 0.1, 0.1, 0.1, 0.1, -5.0])
    assert baselines.wilcoxon_p(mixed, model) == 1.0


def test_diebold_mariano_sees_overlap_between_origins():
    rng = np.random.default_rng(0)
    n, horizon = 200, 12
    # Per-origin losses that share shocks with their neighbours, as overlapping forecasts do.
    shocks = rng.normal(0, 1, n + horizon)
    common = np.convolve(shocks, np.ones(horizon) / horizon, mode="valid")[:n]
    a = 1.0 + common + rng.normal(0, 0.05, n)
    b = a + 0.05 + common * 0.5  # b worse on average but with correlated noise
    p_overlap = baselines.diebold_mariano_p(a, b, horizon)
    p_naive = baselines.diebold_mariano_p(a, b, 1)
    assert p_naive < p_overlap  # counting the overlap makes the test more careful
    assert baselines.diebold_mariano_p(a, a + 1.0, horizon) < 1e-6
    assert baselines.diebold_mariano_p(a, a, horizon) == 1.0


def test_delong_matches_a_bootstrap_of_the_auc_difference():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(150), np.ones(50)].astype(int)
    shared = rng.normal(0, 0.8, 200)  # two detectors that share most of their noise
    a = labels * 1.0 + shared + rng.normal(0, 0.3, 200)
    b = labels * 0.6 + shared + rng.normal(0, 0.3, 200)
    differences = []
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    for _ in range(400):
        i = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        differences.append(roc_auc_score(labels[i], a[i]) - roc_auc_score(labels[i], b[i]))
    z = np.mean(differences) / np.std(differences)
    p = baselines.delong_p(labels, a, b)
    assert p < 1e-4
    assert np.log10(p) == pytest.approx(np.log10(2 * norm.sf(z)), abs=1.5)
    assert baselines.delong_p(labels, a, a) == 1.0
    assert baselines.delong_p(labels, a, a + rng.normal(0, 1e-3, 200)) > 0.05


def test_score_comparison_direction():
    def block(model_value, base_value, p, n=12, higher=True):
        return baselines.compare(
            fitted("NLM"),
            {},
            metric="test_psnr",
            label="PSNR",
            model_value=model_value,
            base_value=base_value,
            higher_is_better=higher,
            test="Wilcoxon signed-rank",
            p_value=p,
            n=n,
            unit="images",
            config=CONFIG,
        )

    assert block(29.0, 29.5, 0.01)["comparison"]["verdict"] == "worse"
    assert "NLM 29.500 is better" in block(29.0, 29.5, 0.01)["summary"]
    assert block(29.0, 29.5, 0.2)["comparison"]["verdict"] == "level"
    assert block(1.0, 2.0, 0.01, higher=False)["comparison"]["verdict"] == "better"
    two = block(31.0, 29.5, 0.5, n=2)
    assert two["comparison"]["verdict"] == "small test set"
    assert "only 2 test images: a verdict needs at least 6" in two["summary"]


def digits_splits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 15).astype("uint8")[..., None]
    y = digits.target
    return (images[:1000], y[:1000]), (images[1000:1300], y[1000:1300]), images[1300:], y[1300:]


def test_pixel_classifier_fits_its_whole_grid_and_picks_on_validation():
    train, val, test, test_y = digits_splits()
    result = baselines.pixel_classifier(train, val, test)
    assert (result["predicted"] == test_y).mean() > 0.9
    tried = result["settings"]["tried"]
    assert len(tried) == 12 and max(t["val_accuracy"] for t in tried) > 0.9
    assert result["settings"]["fitted_on"] == "train"
    # Refitted on train+validation for a champion: the same pick, more data.
    refit = baselines.pixel_classifier(train, val, test, refit=True)
    assert refit["settings"]["fitted_on"] == "train+validation"
    assert refit["settings"]["tried"] == tried


def test_a_tie_on_validation_goes_to_the_more_flexible_setting():
    tried = [{"val_accuracy": 0.95}, {"val_accuracy": 0.975}, {"val_accuracy": 0.975}]
    assert baselines.pick(tried, "val_accuracy") == 2
    assert baselines.pick([{"mae": 2.0}, {"mae": 1.0}, {"mae": 3.0}], "mae", False) == 1


def test_text_baseline_reads_words_and_characters():
    texts = ["a good film", "a bad film", "good acting", "bad acting"] * 10
    labels = np.array([1, 0, 1, 0] * 10)
    result = baselines.tfidf_logistic_regression(
        (texts, labels), (texts[:8], labels[:8]), ["goodish", "baddish"]
    )
    assert list(result["predicted"]) == [1, 0]  # only character n-grams can tell these apart
    assert len(result["settings"]["tried"]) == len(baselines.TEXT_C_GRID)
    assert result["settings"]["C"] == max(baselines.TEXT_C_GRID)  # all tie: the largest C


def test_json_files_are_strict(tmp_path):
    path = tmp_path / "x.json"
    files.write_json(path, {"best": float("inf"), "rows": [1.0, float("nan")], "ok": np.float32(2)})
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"wrote {c}"))
    assert data["best"] is None and "inf" in data["best_note"]
    assert data["rows"] == [1.0, None] and data["ok"] == 2.0


def test_holt_winters_rolling_origins_equal_refitting_the_fixed_model():
    from statsmodels.datasets import elec_equip
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = elec_equip.load().data.iloc[:, 0].to_numpy(dtype="float64")
    train_end, starts, horizon = 180, np.array([190, 200, 230]), 14  # past one season
    for seasonal in ("add", "mul"):
        fast = forecasting.holt_winters(y, train_end, starts, horizon, 12, "add", seasonal)
        fit = ExponentialSmoothing(
            y[:train_end], trend="add", seasonal=seasonal, seasonal_periods=12
        ).fit()
        p = fit.params
        for row, origin in zip(fast, starts, strict=True):
            again = ExponentialSmoothing(
                y[:origin],
                trend="add",
                seasonal=seasonal,
                seasonal_periods=12,
                initialization_method="known",
                initial_level=p["initial_level"],
                initial_trend=p["initial_trend"],
                initial_seasonal=p["initial_seasons"],
            ).fit(
                smoothing_level=p["smoothing_level"],
                smoothing_trend=p["smoothing_trend"],
                smoothing_seasonal=p["smoothing_seasonal"],
                optimized=False,
            )
            # The textbook forecast from its last states: season s[t + h - m(k + 1)].
            ahead = np.arange(1, horizon + 1)
            level = again.level[-1] + ahead * again.trend[-1]
            season = again.season[len(again.season) - 12 + (ahead - 1) % 12]
            expected = level * season if seasonal == "mul" else level + season
            np.testing.assert_allclose(row, expected, rtol=1e-8)
            # statsmodels' forecast() agrees up to one season ahead.
            np.testing.assert_allclose(row[:11], again.forecast(11), rtol=1e-8)
    assert forecasting.holt_winters_candidates(y[:train_end], 12)[1]["seasonal"] == "mul"
    assert forecasting.holt_winters_candidates(y[:20], 12)[0]["seasonal"] is None


def test_more_epochs_are_suggested_only_when_validation_loss_was_still_falling(tmp_path):
    from ktemplate import training

    config = TrainingConfig(epochs=3)
    history = tmp_path / "history_train.csv"
    history.write_text("epoch,loss,val_loss\n0,1.0,0.9\n1,0.8,0.7\n2,0.7,0.6\n")
    (found,) = training.diagnostics(tmp_path, config)
    assert (found.field, found.value) == ("epochs", 6)
    history.write_text("epoch,loss,val_loss\n0,1.0,0.9\n1,0.8,0.5\n2,0.7,0.6\n")
    assert training.diagnostics(tmp_path, config) == []  # the best epoch was not the last
    history.write_text("epoch,loss,val_loss\n0,1.0,NA\n1,0.8,NA\n2,0.7,NA\n")
    assert training.diagnostics(tmp_path, config) == []  # no validation (a refit)
