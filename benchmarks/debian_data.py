"""Real data sets that ship in Debian packages, for the benchmarks (never a project dependency).

Each package is fetched once with `apt-get download` from Debian's archive (no root needed)
and unpacked with `dpkg-deb -x` into the user cache (`$KTEMPLATE_CACHE_DIR/debian`, else
`~/.cache/ktemplate/debian`); an installed copy (`apt-get install fortunes`) is used as it is.

- `fortunes_dir()`: Debian's fortune cookies (package `fortunes`), one file per category.
- `fortunes_dir("de")`: the German fortune cookies (package `fortunes-de`), likewise.
- `oxygen_icons_dir()`: KDE's Oxygen desktop icons at 32x32 (package `oxygen-icon-theme`,
  LGPL-3), one folder per context (actions, apps, devices, ...): small colour PNGs with alpha.
- `r_forecast_series(name)`: a series from the R package forecast (Debian's
  `r-cran-forecast`): `taylor` (half-hourly electricity demand in England and Wales, 12 weeks
  from Monday 5 June 2000), `gas` (monthly Australian gas production 1956-1995), `wineind`
  (monthly Australian wine sales 1980-1994), `woolyrnq` (quarterly Australian woollen yarn
  production 1965-1994). R's lazy-load database is read with the PyPI package `rdata`
  (`pip install rdata`).
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

INSTALLED_FORTUNES = Path("/usr/share/games/fortunes")
R_FORECAST_DATA = "usr/lib/R/site-library/forecast/data/Rdata"
# Start and step of each series, as R's ts attributes give them (the benchmarks write dates).
R_FORECAST_TIME = {
    "taylor": ("2000-06-05 00:00", "30min"),
    "gas": ("1956-01-01", "MS"),
    "wineind": ("1980-01-01", "MS"),
    "woolyrnq": ("1965-01-01", "QS"),
}


def cache() -> Path:
    base = os.environ.get("KTEMPLATE_CACHE_DIR") or Path.home() / ".cache" / "ktemplate"
    return Path(base) / "debian"


def unpacked(package: str) -> Path:
    """The root of `package`'s files, downloaded and unpacked once into the cache."""
    root = cache() / package
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        try:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise FileNotFoundError(
                f"Could not fetch the Debian package {package} ({e}); on a Debian machine run "
                f"`apt-get download {package}` and unpack it into {root} with dpkg-deb -x."
            ) from None
        (deb,) = Path(tmp).glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True)
        os.replace(Path(tmp) / "root", root)
    return root


def fortunes_dir(language: str = "") -> Path:
    """The folder of fortune cookie files, one per category: English, or `language` ("de":
    Debian's `fortunes-de`)."""
    if not language:
        if INSTALLED_FORTUNES.is_dir():
            return INSTALLED_FORTUNES
        return unpacked("fortunes") / "usr/share/games/fortunes"
    if (INSTALLED_FORTUNES / language).is_dir():
        return INSTALLED_FORTUNES / language
    return unpacked(f"fortunes-{language}") / "usr/share/games/fortunes" / language


def oxygen_icons_dir() -> Path:
    """Oxygen's 32x32 icons, one sub-folder per context (actions, apps, categories, ...)."""
    return unpacked("oxygen-icon-theme") / "usr/share/icons/oxygen/base/32x32"


def r_forecast_series(name: str) -> tuple[list[str], np.ndarray]:
    """(time stamps, values) of one series of the R package forecast."""
    import pandas as pd
    import rdata

    base = unpacked("r-cran-forecast") / R_FORECAST_DATA
    with warnings.catch_warnings():  # rdata: "Unknown file type: assumed RDS"
        warnings.simplefilter("ignore")
        index = rdata.conversion.convert(
            rdata.parser.parse_data(gzip.decompress(base.with_suffix(".rdx").read_bytes()))
        )["variables"]
        offset, length = (int(v) for v in index[name])
        with open(base.with_suffix(".rdb"), "rb") as f:
            f.seek(offset)
            chunk = f.read(length)
        (size,) = struct.unpack(">I", chunk[:4])  # then the zlib-compressed serialized object
        values = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(chunk[4:])))
    values = np.asarray(values, dtype="float64")
    start, step = R_FORECAST_TIME[name]
    stamps = pd.date_range(start, periods=len(values), freq=step)
    fmt = "%Y-%m-%d %H:%M" if step.endswith("min") else "%Y-%m-%d"
    return [t.strftime(fmt) for t in stamps], values
