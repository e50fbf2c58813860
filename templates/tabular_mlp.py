"""Tabular prediction with an MLP: rows of numeric and categorical columns → a class or a number.

Start here: this is the shortest template, and the one to copy for a new task on a table.

Task: predict one column of a table (`target_column`) from the others. `task=auto` makes it
classification when the target holds text or a few whole numbers, regression otherwise.

Data: scikit-learn's bundled `wine` (178 wines, 13 measurements, 3 cultivars: classification,
the default) and `diabetes` (442 patients, 10 measurements, disease progression after a year:
regression), or `csv:PATH` (a header row; numeric columns are numbers, text columns are
categories). A fixed split 70/10/20, stratified on the classes or on quantiles of a numeric
target.

Model: inside the model, numeric columns are normalized with the train split's statistics and
each categorical column is one-hot encoded over its train values (`StringLookup`, unseen values
share one slot); then Dense blocks and the task's head (`ktemplate.tasks`).

Export: `serve` takes one tensor per column (float32 numbers, strings for categories), each
[batch], and returns `probabilities`, `class_id`, `class_name` (classification) or `prediction`
(regression). LiteRT and ONNX take the numeric columns (a table of numbers only).

What runs, in order (`ktemplate train tabular_mlp`): load_data → build_model → fit (early
stopping on validation loss) → evaluate → baseline (linear model and gradient boosting) →
export. Adapt it: `ktemplate new my_table --from tabular_mlp`, then change `Config` and
`load_table` (the data section); `ktemplate check my_table` runs every hook in seconds.

    ktemplate train tabular_mlp
    ktemplate train tabular_mlp --dataset diabetes
    ktemplate train tabular_mlp --dataset csv:survey.csv --set target_column=answer
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf
from ktemplate.pipelines import sources

from ktemplate import baselines, convert, tasks, training
from ktemplate.config import (
    Fraction,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Resolver,
    TrainingConfig,
)
from ktemplate.contract import Data

NAME = "tabular_mlp"
TUNE_OBJECTIVE = "val_loss"  # cross-entropy or standardized squared error on validation

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    dataset: str = "wine"  # wine (classes), diabetes (numbers) or csv:PATH
    target_column: str = ""  # the column to predict; wine and diabetes: their target
    task: Literal["auto", "classification", "regression"] = "auto"  # auto: from the target
    categorical_columns: str = ""  # comma-separated numeric columns to treat as categories
    epochs: PositiveInt = 200  # maximum epochs; early stopping usually ends much sooner
    batch_size: PositiveInt = 32  # per-replica batch size
    learning_rate: PositiveFloat = 1e-3  # peak learning rate (cosine decay to 1% of it)
    early_stopping_patience: NonNegativeInt = 20  # epochs without val_loss improvement
    units: PositiveInt = 64  # units of the first hidden layer (halved in each further layer)
    hidden_layers: NonNegativeInt = 2  # Dense blocks before the head
    dropout: Fraction = 0.1  # dropout after each hidden layer
    batch_norm: bool = False  # off: small tables give noisy batch statistics
    class_weight: Literal["auto", "none", "balanced"] = "auto"  # auto: balanced if unbalanced


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test


def load_table(config: Config):
    """The configured table as a pandas DataFrame and the name of its target column."""
    import pandas as pd

    if config.dataset in ("wine", "diabetes"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{config.dataset}")(as_frame=True)
        frame = bunch.frame
        if config.dataset == "wine":  # the cultivar's name, not its number
            frame["target"] = [f"cultivar_{i}" for i in frame["target"]]
        return frame, config.target_column or "target"
    if config.dataset.startswith("csv:"):
        path = Path(config.dataset[4:])
        if not path.is_file():
            raise FileNotFoundError(f"CSV file not found: {path}.")
        frame = pd.read_csv(path)
        if config.target_column not in frame.columns:
            raise ValueError(
                f"target_column={config.target_column!r} is not a column of {path}; its columns "
                f"are {', '.join(map(str, frame.columns))}. Set --set target_column=NAME."
            )
        return frame, config.target_column
    raise ValueError(f"Unknown dataset {config.dataset!r}: use wine, diabetes or csv:PATH.")


def input_name(column: str) -> str:
    """The export's input name for a column (letters, digits and underscores)."""
    name = re.sub(r"\W+", "_", str(column)).strip("_") or "column"
    return name if name[0].isalpha() else f"c_{name}"


def load_data(config: Config, batch_size: int) -> Data:
    """Reads the table, resolves the task, splits it and builds the (features, target) pipelines.

    Features are a dict of per-column [n] arrays (float32 numbers, strings for categories).
    """
    frame, target_name = load_table(config)
    target = frame.pop(target_name).to_numpy()
    auto = Resolver(config)
    kind = auto.pick("task", *tasks.infer_kind(target))
    forced = {c.strip() for c in config.categorical_columns.split(",") if c.strip()}
    unknown = forced - set(map(str, frame.columns))
    if unknown:
        raise ValueError(f"categorical_columns names no column of the table: {sorted(unknown)}.")
    columns = {}
    for column in frame.columns:
        values = frame[column]
        numeric = values.dtype.kind in "iufb" and str(column) not in forced
        if numeric and values.isna().any():
            raise ValueError(f"Column {column!r} has empty cells: fill or drop them first.")
        columns[str(column)] = "numeric" if numeric else "categorical"
    numbers = [c for c in frame.columns if columns[str(c)] == "numeric"]
    sources.check_numbers(frame[numbers].to_numpy("float64"), numbers, config.dataset)
    if kind == "regression":
        sources.check_numbers(target.astype("float64"), [target_name], config.dataset)
    if kind == "classification":
        class_names = sorted(map(str, set(target)))
        y = np.searchsorted(class_names, target.astype(str))
    else:
        class_names, y = None, target.astype("float32")
    index = tasks.split(kind, y, SPLIT_FRACTIONS)
    features = {}  # input name → [n] values: float32 numbers or strings
    for column, kind_of_column in columns.items():
        values = frame[column]
        numeric = kind_of_column == "numeric"
        features[input_name(column)] = (
            values.to_numpy("float32") if numeric else values.astype(str).to_numpy()
        )
    train = {name: values[index["train"]] for name, values in features.items()}
    numeric = [input_name(c) for c, k in columns.items() if k == "numeric"]
    spec = {
        "dataset": config.dataset,
        "task": kind,
        "target": str(target_name),
        "columns": {input_name(c): {"column": c, "kind": k} for c, k in columns.items()},
        "numeric_mean": {n: float(train[n].mean()) for n in numeric},
        "numeric_variance": {n: float(train[n].var()) or 1.0 for n in numeric},
        "vocabularies": {
            input_name(c): sorted(set(train[input_name(c)].tolist()))
            for c, k in columns.items()
            if k == "categorical"
        },
        "class_names": class_names,
        "target_mean": float(y[index["train"]].mean()) if kind == "regression" else 0.0,
        "target_std": float(y[index["train"]].std() or 1.0) if kind == "regression" else 1.0,
        "sizes": {split: int(len(i)) for split, i in index.items()},
    }
    class_weight = None
    if kind == "classification":
        counts = np.bincount(y[index["train"]], minlength=len(class_names))
        class_weight = training.class_weights(counts, class_names, auto)
    spec.update(auto.spec())

    def split(name: str) -> tf.data.Dataset:
        rows = {n: v[index[name]] for n, v in features.items()}
        return tf.data.Dataset.from_tensor_slices((rows, y[index[name]]))

    def batched(name: str, shuffle: bool) -> tf.data.Dataset:
        ds = split(name).cache()
        if shuffle:
            ds = ds.shuffle(len(index[name]), seed=config.seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return Data(
        train=batched("train", True),
        val=batched("val", False),
        test=batched("test", False),
        spec=spec,
        splits={name: split(name) for name in ("train", "val", "test")},
        class_weight=class_weight,
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def encoder(spec: dict[str, Any]) -> tuple[dict[str, keras.Input], Any]:
    """The raw column inputs, and their encoding inside the model (normalized numbers, one-hot
    categories), concatenated."""
    inputs, parts = {}, []
    numeric = [n for n, c in spec["columns"].items() if c["kind"] == "numeric"]
    for name, column in spec["columns"].items():
        dtype = "float32" if column["kind"] == "numeric" else "string"
        inputs[name] = keras.Input(shape=(1,), dtype=dtype, name=name)
    if numeric:
        stacked = keras.layers.Concatenate(name="numeric")([inputs[n] for n in numeric])
        parts.append(
            keras.layers.Normalization(
                mean=[spec["numeric_mean"][n] for n in numeric],
                variance=[spec["numeric_variance"][n] for n in numeric],
                name="normalize",
            )(stacked)
        )
    for name, vocabulary in spec["vocabularies"].items():
        lookup = keras.layers.StringLookup(
            vocabulary=vocabulary, output_mode="one_hot", name=f"lookup_{name}"
        )
        parts.append(lookup(inputs[name]))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    return inputs, x


def build_model(config: Config, spec: dict[str, Any]) -> keras.Model:
    """Column inputs → encoding → Dense blocks → the task's head; compiled for the task."""
    inputs, x = encoder(spec)
    for i in range(config.hidden_layers):
        x = keras.layers.Dense(
            max(4, config.units // 2**i),
            kernel_regularizer=training.regularizer(config),
            name=f"dense_{i}",
        )(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = keras.layers.Activation(config.activation, name=f"activation_{i}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    classes = len(spec["class_names"] or [])
    outputs = tasks.head(spec["task"], x, classes, spec["target_mean"], spec["target_std"])
    model = keras.Model(inputs, outputs, name=NAME)
    tasks.compile_model(model, spec["task"], config, spec["sizes"]["train"], spec["target_std"])
    return model


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------


def search_space(hp, config: Config) -> Config:
    """Maps keras-tuner hyperparameters onto `Config` fields; defaults equal `config`'s."""
    return dataclasses.replace(
        config,
        units=hp.Choice("units", sorted({32, 64, 128, 256, config.units}), default=config.units),
        hidden_layers=hp.Int("hidden_layers", 1, 3, default=config.hidden_layers),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=config.dropout),
        learning_rate=hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=config.learning_rate
        ),
    )


# ---------------------------------------------------------------------------------------------
# Serving and export
# ---------------------------------------------------------------------------------------------


def _signature(spec: dict[str, Any], kinds=("numeric", "categorical")) -> list[tf.TensorSpec]:
    return [
        tf.TensorSpec([None], tf.float32 if c["kind"] == "numeric" else tf.string, name=n)
        for n, c in spec["columns"].items()
        if c["kind"] in kinds
    ]


def serving_endpoints(model: keras.Model, spec: dict[str, Any]) -> dict:
    """`serve`: one [batch] tensor per column → the task's decoded outputs."""
    names = list(spec["columns"])

    def serve(*columns):
        rows = {n: tf.expand_dims(c, -1) for n, c in zip(names, columns, strict=True)}
        return tasks.serving_outputs(spec["task"], model(rows, training=False), spec["class_names"])

    return {"serve": (serve, _signature(spec))}


def manifest_extras(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "input": {
            "kind": "table_row",
            "columns": {n: c["column"] for n, c in spec["columns"].items()},
            "categorical": sorted(spec["vocabularies"]),
        },
        "task": spec["task"],
        "target": spec["target"],
        "class_names": spec["class_names"],
        "outputs": tasks.describe_outputs(spec["task"], spec["class_names"], spec["target"]),
    }


def portable_endpoint(model: keras.Model, spec: dict[str, Any], runtime: str) -> convert.Portable:
    """The numeric columns as float32 [batch] tensors (LiteRT and ONNX have no string lookup)."""
    if spec["vocabularies"]:
        raise ValueError(
            f"LiteRT and ONNX take numbers only; this table has categorical columns "
            f"({', '.join(spec['vocabularies'])}): export a SavedModel (the default format)."
        )
    names = list(spec["columns"])

    def predict(*columns):
        rows = {n: tf.expand_dims(c, -1) for n, c in zip(names, columns, strict=True)}
        output = model(rows, training=False)
        if spec["task"] == "classification":
            return {"probabilities": tf.cast(output, tf.float32)}
        return {"prediction": tf.reshape(tf.cast(output, tf.float32), [-1])}

    sample = {n: np.full([2], spec["numeric_mean"][n], "float32") for n in names}
    return convert.Portable(
        fn=predict,
        signature=_signature(spec),
        sample=sample,
        reference=None,
        notes={"inputs": "one float32 [batch] tensor per column, in the manifest's order"},
    )


# ---------------------------------------------------------------------------------------------
# Metrics, plots and the baseline
# ---------------------------------------------------------------------------------------------


def _arrays(ds: tf.data.Dataset, spec: dict[str, Any]):
    """(features dict, encoded matrix for scikit-learn, targets) of an unbatched split."""
    rows, ys = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        rows.append(x)
        ys.append(y)
    features = {n: np.concatenate([r[n] for r in rows]) for n in spec["columns"]}
    matrix = [
        features[n].astype("float64")[:, None]
        if c["kind"] == "numeric"
        else (features[n].astype("U")[:, None] == np.asarray(spec["vocabularies"][n])).astype(float)
        for n, c in spec["columns"].items()
    ]
    return features, np.concatenate(matrix, axis=1), np.concatenate(ys)


def evaluate(model: keras.Model, data: Data, out_dir: str | Path | None) -> dict[str, Any]:
    """The task's test metrics; writes predictions.png (confusion matrix, or predicted against
    actual) to `out_dir` when given."""
    spec = data.spec
    features, _, y = _arrays(data.splits["test"], spec)
    output = model.predict({n: tf.constant(v[:, None]) for n, v in features.items()}, verbose=0)
    metrics = tasks.test_metrics(spec["task"], y, output, spec["class_names"])
    if out_dir is not None:
        path = Path(out_dir) / "predictions.png"
        tasks.plot(spec["task"], metrics, y, output, path, spec["class_names"])
    return metrics


def baseline(model: keras.Model, data: Data, config: Config) -> dict[str, Any]:
    """A linear model and gradient boosting on the same rows (the best on validation), compared
    with the model on the test rows; see `ktemplate.tasks.row_baselines`."""
    spec = data.spec
    (_, train_x, train_y), (_, val_x, val_y) = (
        _arrays(data.splits[s], spec) for s in ("train", "val")
    )
    features, test_x, test_y = _arrays(data.splits["test"], spec)
    fitted = tasks.row_baselines(
        spec["task"],
        (train_x, train_y),
        (val_x, val_y),
        test_x,
        seed=config.seed,
        refit=data.val is None,  # a champion refitted on train+validation
        max_train=config.baseline_max_train,
    )
    output = model.predict({n: tf.constant(v[:, None]) for n, v in features.items()}, verbose=0)
    return tasks.compare(
        spec["task"],
        fitted,
        test_y,
        output,
        spec["class_names"],
        config,
        tries=[
            baselines.Try("units", 2 * config.units, "a wider network"),
            baselines.Try("dropout", 0.3, "more dropout"),
            baselines.Try("members", 2 * config.members, "more models averaged"),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    """`ktemplate train tabular_mlp [options]`, run as
    `python -m ktemplate.templates.tabular_mlp [options]`."""
    from ktemplate import cli

    return cli.main_for(__file__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
