"""Fetch the public copy of a BEIR dataset when online (`--bench beir:<name>`), cached for later offline runs.

The BEIR authors publish every dataset as `<name>.zip` holding `<name>/corpus.jsonl`,
`queries.jsonl` and `qrels/`; it is downloaded once into `cache_dir("benchmarks", "beir")`
and read by the same loader as a local folder. Offline, the error says what to do instead.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_dir
from tdro_suite.common.paths import cache_dir
from tdro_suite.evaluation.layout import is_beir_dataset

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
CHUNK = 1 << 20


def fetch_beir(name: str, *, root: Path | None = None, timeout: float = 30.0) -> Path:
    """Return a local folder with BEIR dataset `name`, downloading and unpacking it on first use."""
    if not name or "/" in name or name.startswith("."):
        raise DataError(f"'{name}' is not a BEIR dataset name (e.g. scifact, nfcorpus, fiqa).")
    target = (root or cache_dir("benchmarks", "beir")) / name
    if is_beir_dataset(target):
        return target
    url = BEIR_URL.format(name=name)
    with tempfile.TemporaryDirectory(prefix="tdro-beir-") as scratch:
        archive = Path(scratch) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with Progress(*Progress.get_default_columns()[:1], DownloadColumn(), TransferSpeedColumn()) as bar:
                    task = bar.add_task(f"download {name}", total=total)
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.advance(task, len(chunk))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"Could not download BEIR dataset '{name}' from {url} ({reason}). If this machine is offline, "
                f"download the zip elsewhere, unpack it, and pass the folder: --bench path/to/{name}."
            ) from None
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(scratch) / "unpacked")
        except zipfile.BadZipFile:
            raise DataError(f"{url} did not return a zip archive (is '{name}' a BEIR dataset?).") from None
        unpacked = Path(scratch) / "unpacked" / name
        if not is_beir_dataset(unpacked):
            raise DataError(f"{url}: the archive has no {name}/corpus.jsonl + qrels/; not a BEIR dataset.")
        with atomic_dir(target) as tmp:
            for item in unpacked.iterdir():
                shutil.move(str(item), tmp / item.name)
    return target
