"""Smoke figure for text_transformer's keras-hub path: a tiny random BERT as a local preset.

Real presets (bert_tiny_en_uncased, ...) download from Kaggle or Hugging Face, which this
project's machines cannot reach, so their accuracy is not measured here. This script times the
whole `backbone=` path on the default movie sentences instead: a randomly initialized BERT
(2 layers, width 64, 4 heads) whose WordPiece vocabulary is the train split's most frequent
words, saved with `save_to_preset`, then `ktemplate train text_transformer --set
backbone=FOLDER` (frozen epochs, fine-tuning, evaluation, baseline, export). Its accuracy says
nothing about pretrained models: the backbone has learned nothing before the run.

    python benchmarks/text_backbone_smoke.py
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
from ktemplate.pipelines import text  # noqa: E402
from ktemplate.templates import text_transformer  # noqa: E402

from ktemplate import config as config_lib  # noqa: E402
from ktemplate import files, run  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_preset(folder: Path, train_texts: list[str], words: int, seed: int) -> None:
    counts = collections.Counter(
        w for t in train_texts for w in re.findall(r"\w+|[^\w\s]", t.lower())
    )
    vocabulary = SPECIAL + [w for w, _ in counts.most_common(words)]
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=128,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=128)
    backbone.save_to_preset(folder)
    preprocessor.save_to_preset(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--words", type=int, default=8000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    splits = text.load_text(text_transformer.Config().dataset)
    train_texts, _ = text.arrays(splits.train)
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "tiny_bert"
        write_tiny_preset(preset, train_texts, args.words, args.seed)
        overrides = {
            "backbone": str(preset),
            "members": "1",
            "seed": str(args.seed),
            **config_lib.parse_assignments(args.set),
        }
        config = config_lib.apply_overrides(text_transformer.Config(), overrides, from_text=True)
        start = time.perf_counter()
        run_dir = run.train(text_transformer, config, output_dir=Path(tmp) / "runs", verbose=0)
        wall = time.perf_counter() - start
        metrics = files.read_json(run_dir / "metrics.json")
        spec = files.read_json(run_dir / "spec.json")
        export_mb = sum(f.stat().st_size for f in (run_dir / "export").rglob("*") if f.is_file())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores; keras-hub "
        f"{keras_hub.__version__}; overrides {' '.join(args.set) or 'none'}\n"
    )
    print(
        "| backbone | sequence length | epochs (frozen + fine-tune) | fit s | run s "
        "| test accuracy | TF-IDF baseline | export MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    epochs = metrics["epochs"]
    print(
        f"| tiny random BERT (2x64, {args.words} words) | {spec['sequence_length']} "
        f"| {epochs['train']} + {epochs.get('fine_tune', 0)} | {metrics['train_seconds']:.0f} "
        f"| {wall:.0f} | {metrics['test_accuracy']:.4f} "
        f"| {metrics['baseline']['comparison']['baseline']:.4f} | {export_mb / 1e6:.1f} |"
    )


if __name__ == "__main__":
    main()
