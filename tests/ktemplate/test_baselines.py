import numpy as np
import pytest

from ktemplate import baselines, forecasting


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
    return {"name": name, "settings": {}, "predicted": predicted, "seconds": 0.1}


def test_classification_verdicts_and_sentence():
    labels = np.array([0, 1] * 100)
    good = labels.copy()
    bad = labels.copy()
    bad[:40] = 1 - bad[:40]  # 40 errors
    names = ["a", "b"]
    worse = baselines.compare_classification(fitted(predicted=good), labels, bad, names, "X")
    assert worse["comparison"]["verdict"] == "worse"
    assert worse["comparison"]["difference"] == pytest.approx(-0.2)
    assert worse["summary"].startswith("test accuracy 0.800 — SVC (RBF) on raw pixels 1.000 is")
    assert "McNemar p=" in worse["summary"] and worse["suggestion"] == "X"
    better = baselines.compare_classification(fitted(predicted=bad), labels, good, names, "X")
    assert better["comparison"]["verdict"] == "better" and "suggestion" not in better
    one_off = good.copy()
    one_off[0] = 1 - one_off[0]
    level = baselines.compare_classification(
        fitted(predicted=one_off), labels, good, ["a", "b"], ""
    )
    assert level["comparison"]["verdict"] == "level"
    assert "no significant difference" in level["summary"]
    assert level["test_errors"] == 1 and level["test_accuracy"] == 0.995


def test_score_comparison_direction_and_tolerance():
    block = baselines.compare_scores(
        fitted("Holt-Winters"), {}, "test_mae", "test MAE", 1.0, 2.0, False, 0.02, True, "s"
    )
    assert block["comparison"]["verdict"] == "better" and block["comparison"]["ratio"] == 0.5
    block = baselines.compare_scores(
        fitted("NLM"), {}, "test_psnr", "PSNR", 29.0, 29.5, True, 0.1, False, "s"
    )
    assert block["comparison"]["verdict"] == "worse" and "NLM 29.500 is better" in block["summary"]
    block = baselines.compare_scores(
        fitted("NLM"), {}, "test_psnr", "PSNR", 29.45, 29.5, True, 0.1, False, "s"
    )
    assert block["comparison"]["verdict"] == "level"


def test_budget_is_a_share_of_training_time_with_a_floor():
    assert baselines.budget_seconds(0, 10) == baselines.MIN_BUDGET_SECONDS
    assert baselines.budget_seconds(0, 400) == pytest.approx(400 * baselines.BUDGET_FRACTION)
    assert baselines.budget_seconds(3, 400) == 3


def test_pixel_classifier_picks_on_validation_and_respects_the_deadline():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 15).astype("uint8")[..., None]
    y = digits.target
    train, val, test = (images[:1000], y[:1000]), (images[1000:1300], y[1000:1300]), images[1300:]
    result = baselines.pixel_classifier(train, val, test, baselines.Deadline(60))
    accuracy = (result["predicted"] == y[1300:]).mean()
    assert accuracy > 0.9
    best = max(t["val_accuracy"] for t in result["settings"]["tried"])
    assert len(result["settings"]["tried"]) == 12 and best > 0.9
    # An exhausted budget still fits one setting and says what it skipped.
    rushed = baselines.pixel_classifier(train, val, test, baselines.Deadline(0))
    assert len(rushed["settings"]["tried"]) == 1
    assert any("11 of 12 settings not tried" in note for note in rushed["notes"])


def test_holt_winters_rolling_origins_equal_refitting_the_fixed_model():
    from statsmodels.datasets import elec_equip
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = elec_equip.load().data.iloc[:, 0].to_numpy(dtype="float64")
    train_end, starts, horizon = 180, np.array([190, 200, 230]), 6
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
            np.testing.assert_allclose(row, again.forecast(horizon), rtol=1e-8)
    assert forecasting.holt_winters_candidates(y[:train_end], 12)[1]["seasonal"] == "mul"
    assert forecasting.holt_winters_candidates(y[:20], 12)[0]["seasonal"] is None
