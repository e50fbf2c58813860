"""Peak memory and speed of the streaming `dir:` image loader, against decoding into memory.

Writes folders of small generated PNGs (32x32 RGB noise, 10 classes), then measures, each in a
fresh process so that its peak RSS is its own:
    stream    `images.load_directory` (file listing, the parallel corrupt-file check, the split)
              and one pass over the train split through `prepare(..., cache="none")`
    train     one training epoch of image_cnn's default model on that streamed train split
    memory    what the loader did before: every image decoded and stacked in one array
Peak RSS should not grow with the folder's size for `stream` and `train`; it does for `memory`.

    python benchmarks/image_streaming.py --images 20000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = 10
SIDE = 32
CHANNELS = 3


def write_folder(root: Path, count: int) -> None:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        c = i % CLASSES
        shape = (SIDE, SIDE, CHANNELS)
        pixels = np.clip(rng.normal(20 * c + 30, 30, shape), 0, 255).astype("uint8")
        (root / f"class{c}" / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(mode: str, root: Path) -> dict:
    import numpy as np
    from ktemplate.pipelines import images

    start = time.perf_counter()
    if mode == "memory":
        files = sorted(root.rglob("*.png"))
        import tensorflow as tf

        decoded = [tf.io.decode_png(tf.io.read_file(str(f)), CHANNELS).numpy() for f in files]
        stacked = np.stack(decoded)  # the list and the array, as the old loader held them
        return {"images": len(stacked), "seconds": time.perf_counter() - start}
    splits = images.load_directory(root, 0, CHANNELS)
    listed = time.perf_counter() - start
    train = images.prepare(splits.train, 256, True, cache="none")
    start = time.perf_counter()
    if mode == "stream":
        count = sum(int(x.shape[0]) for x, _ in train)
        speed = count / (time.perf_counter() - start)
        return {"images": count, "list_check_s": listed, "images_per_s": speed}
    from ktemplate.templates import image_cnn

    mean, variance = images.channel_stats(splits.train, CHANNELS, splits.sizes["train"])
    spec = {
        "input_shape": [SIDE, SIDE, CHANNELS],
        "class_names": [f"class{c}" for c in range(CLASSES)],
        "mean": mean,
        "variance": variance,
        "sizes": splits.sizes,
    }
    model = image_cnn.build_model(image_cnn.Config(epochs=1, batch_size=256), spec)
    model.fit(train, epochs=1, verbose=0)
    count = splits.sizes["train"]
    speed = count / (time.perf_counter() - start)
    return {"images": count, "list_check_s": listed, "images_per_s": speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        result = measure(args.mode, Path(args.root))
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.images:
            root = Path(tmp) / f"images{count}"
            start = time.perf_counter()
            write_folder(root, count)
            written = time.perf_counter() - start
            for mode in ("stream", "train", "memory"):
                out = subprocess.run(
                    [sys.executable, __file__, "--mode", mode, "--root", str(root)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rows.append((count, mode, json.loads(out.stdout.strip().splitlines()[-1])))
            print(f"wrote {count} images in {written:.0f} s", file=sys.stderr)
    shape = f"{SIDE}x{SIDE}x{CHANNELS}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores; {shape} PNGs\n")
    print("| images in folder | measurement | peak RSS MiB | list + check s | images/s |")
    print("|---|---|---|---|---|")
    for count, mode, r in rows:
        speed = f"{r['images_per_s']:,.0f}" if "images_per_s" in r else "-"
        listed = r.get("list_check_s", r.get("seconds"))
        listed = f"{listed:.1f}" + ("" if "list_check_s" in r else " (decode all)")
        print(f"| {count:,} | {mode} | {r['peak_rss_mb']:,.0f} | {listed} | {speed} |")


if __name__ == "__main__":
    main()
