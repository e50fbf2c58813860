"""The `auto` choice between a template's candidates: short fits, scored on validation."""

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
