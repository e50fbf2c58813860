"""The `auto` choice between a template's candidates: short fits, scored on validation."""

import shutil

import pytest
from ktemplate.tuning import report, search

from ktemplate import files, lifecycle, run, templates

CANDIDATES = '''

def candidates(config, spec):
    """units=64 (the default) chooses between a narrow and a wide network on validation."""
    if config.units != 64:
        return None
    return {"narrow": {"units": 8}, "wide": {"units": 48}}
'''


def _copy_with_candidates(tmp_path, name):
    folder = tmp_path / "templates"
    path = templates.copy_template(name, "tabular_mlp", folder)
    path.write_text(path.read_text().replace("\n\ndef main(", CANDIDATES + "\n\ndef main(", 1))
    return folder


def test_train_fits_each_candidate_briefly_and_records_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv(templates.PROJECT_DIR_ENV, str(_copy_with_candidates(tmp_path, "choice_a")))
    template = templates.load("choice_a")
    config = template.Config(epochs=8, baseline=False)
    assert lifecycle.candidate_epochs(config) == 3
    run_dir = run.train(template, config, output_dir=tmp_path / "runs", verbose=0)
    spec = files.read_json(run_dir / "spec.json")
    record = spec["candidates"]
    assert set(record["scores"]) == {"narrow", "wide"} and record["metric"] == "val_loss"
    assert record["choice"] == min(record["scores"], key=record["scores"].get)
    units = {"narrow": 8, "wide": 48}[record["choice"]]
    assert files.read_json(run_dir / "config.json")["units"] == units
    assert spec["resolved"]["units"]["reason"].startswith("best val_loss after 3-epoch fits")


def test_tune_searches_the_candidates_as_one_choice(tmp_path, monkeypatch):
    monkeypatch.setenv(templates.PROJECT_DIR_ENV, str(_copy_with_candidates(tmp_path, "choice_b")))
    template = templates.load("choice_b")
    config = template.Config(epochs=2, baseline=False)
    sweep = search.Sweep(template="choice_b", max_trials=2, max_epochs=2)
    folder = search.tune(template, config, {}, sweep, output_dir=tmp_path / "out", verbose=0)
    rows = report.trials(folder)
    assert all(r["hyperparameters"]["candidate"] in ("narrow", "wide") for r in rows)
    best = rows[0]["hyperparameters"]["candidate"]
    champion = files.read_json(folder / "champion" / "config.json")
    assert champion["units"] == {"narrow": 8, "wide": 48}[best]
    assert "candidates" not in files.read_json(folder / "champion" / "spec.json")  # no refits


def test_a_partner_differs_in_the_ensemble_field_alone_and_is_close_to_the_winner():
    found = {
        "a": {"base": "x", "scale": "none"},
        "b": {"base": "y", "scale": "none"},
        "c": {"base": "z", "scale": "none"},
        "d": {"base": "y", "scale": "log"},  # another scale: never averaged with "a"
    }
    scores = {"a": 1.0, "b": 1.08, "c": 1.05, "d": 1.01}
    assert lifecycle._partner("base", found, scores, "a", "min") == "c"
    assert lifecycle._partner(None, found, scores, "a", "min") is None  # no ENSEMBLE_FIELD
    far = {**scores, "b": 1.2, "c": 1.3}  # more than PARTNER_MARGIN behind
    assert lifecycle._partner("base", found, far, "a", "min") is None
    accuracy = {"a": 0.9, "b": 0.85, "c": 0.7, "d": 0.95}
    assert lifecycle._partner("base", found, accuracy, "a", "max") == "b"


def test_the_run_trains_the_partner_and_keeps_the_best_of_the_two_and_their_average(
    tmp_path, monkeypatch
):
    folder = _copy_with_candidates(tmp_path, "choice_c")
    path = folder / "choice_c.py"
    path.write_text(path.read_text().replace("\nNAME = ", '\nENSEMBLE_FIELD = "units"\nNAME = ', 1))
    monkeypatch.setenv(templates.PROJECT_DIR_ENV, str(folder))
    monkeypatch.setattr(lifecycle, "PARTNER_MARGIN", 100.0)  # any runner-up is close here
    template = templates.load("choice_c")
    config = template.Config(epochs=4, baseline=False)
    run_dir = run.train(template, config, output_dir=tmp_path / "runs", verbose=0)
    spec = files.read_json(run_dir / "spec.json")
    record = files.read_json(run_dir / "ensemble.json")
    assert sorted(record["members"]) == ["narrow", "wide"] and record["metric"] == "val_loss"
    assert record["members"][0] == spec["candidates"]["choice"]  # the short fits' winner first
    scores = record["scores"]
    assert set(scores) == {"narrow", "wide", "average"}
    assert record["kept"] == min(scores, key=scores.get) == spec["ensemble"]["kept"]
    assert len(record["epochs"]["train"]) == 2  # each trained in full, in members/0 and 1
    assert (run_dir / "members" / "1" / "checkpoints" / "best.keras").is_file()
    units = files.read_json(run_dir / "config.json")["units"]
    if record["kept"] != "average":  # the kept one's config is the run's
        assert units == {"narrow": 8, "wide": 48}[record["kept"]]
    # The exported model is the kept one: its validation loss is the recorded score.
    data = run.load_data(template, run.recorded_config(template, run_dir))
    model = run.load_best_model(run_dir)
    model.compile(loss=template.build_model(run.recorded_config(template, run_dir), data.spec).loss)
    loss = model.evaluate(data.val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(scores[record["kept"]], rel=1e-4)
    metrics = files.read_json(run_dir / "metrics.json")
    assert metrics["ensemble"]["kept"] == record["kept"]
    # Killed after the runner-up started, before the choice: a resumed run keeps the finished
    # model, trains the other again and chooses on the scores of both.
    for path in ("metrics.json", "ensemble.json", "members/1/member.json"):
        (run_dir / path).unlink()
    shutil.rmtree(run_dir / "export")
    first = run_dir / "members" / "0" / "checkpoints" / "best.keras"
    stamp = first.stat().st_mtime_ns
    resumed = run.train(template, config, resume=run_dir, verbose=0)
    again = files.read_json(resumed / "ensemble.json")
    assert again["members"] == record["members"] and again["scores"]["narrow"] > 0
    assert again["scores"] == pytest.approx(scores, rel=0.05)  # the retrained one: same seed
    assert again["kept"] == min(again["scores"], key=again["scores"].get)
    assert first.stat().st_mtime_ns == stamp  # the finished one is not trained again
    # Killed after the choice (while exporting): resumed, it keeps the choice and its record.
    (run_dir / "metrics.json").unlink()
    shutil.rmtree(run_dir / "export")
    run.train(template, config, resume=run_dir, verbose=0)
    assert files.read_json(run_dir / "metrics.json")["ensemble"]["kept"] == again["kept"]
    assert files.read_json(run_dir / "spec.json")["ensemble"]["scores"] == again["scores"]
