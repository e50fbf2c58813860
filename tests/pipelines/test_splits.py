import numpy as np
import pytest
from ktemplate.pipelines.splits import stratified_split


def test_split_is_stratified_disjoint_complete_and_fixed():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    index = stratified_split(labels, (0.7, 0.1, 0.2))
    all_idx = np.concatenate(list(index.values()))
    assert sorted(all_idx.tolist()) == list(range(len(labels)))
    for split in index.values():
        assert set(labels[split]) == {0, 1, 2, 3}
    assert len(index["test"]) == 2 + 4 + 6 + 8
    again = stratified_split(labels, (0.7, 0.1, 0.2))
    for split in index:
        np.testing.assert_array_equal(index[split], again[split])


def test_too_small_class_is_named():
    labels = np.array([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="Class 'cats' has 2 example"):
        stratified_split(labels, (0.7, 0.1, 0.2), class_names=["dogs", "cats"])


def test_an_unknown_dataset_lists_only_what_the_template_accepts():
    from ktemplate.pipelines import sources

    with pytest.raises(ValueError) as error:
        sources.parse_source("mnist", allowed=("co2", "csv"))
    message = str(error.value)
    assert "co2, csv:..." in message and "csv:path/to/file.csv" in message
    assert "tfds" not in message and "dir" not in message
