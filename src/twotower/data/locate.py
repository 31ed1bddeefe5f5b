"""Find a collection by folder path or by name; download public BEIR sets when online."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from twotower.errors import ResolutionError
from twotower.settings import cache_root, offline

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
BEIR_NAMES = {
    "msmarco",
    "trec-covid",
    "nfcorpus",
    "nq",
    "hotpotqa",
    "fiqa",
    "arguana",
    "webis-touche2020",
    "cqadupstack",
    "quora",
    "dbpedia-entity",
    "scidocs",
    "fever",
    "climate-fever",
    "scifact",
}


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where a collection name is looked up, in order."""
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("TWOTOWER_DATA"):
        dirs.append(Path(os.environ["TWOTOWER_DATA"]))
    dirs += [Path("data"), Path("../shared/data"), cache_root() / "datasets"]
    return dirs


def is_collection_dir(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def locate_collection(
    name_or_path: str | Path, data_dir: str | Path | None = None, *, download: bool = True
) -> Path:
    """Resolve a collection: an existing folder, else a name under :func:`search_dirs`, else download."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        if not is_collection_dir(candidate):
            raise ResolutionError(
                f"{candidate}: not a BEIR collection folder (needs corpus.jsonl and queries.jsonl)"
            )
        return candidate.resolve()
    name = str(name_or_path)
    looked = search_dirs(data_dir)
    for directory in looked:
        if is_collection_dir(directory / name):
            return (directory / name).resolve()
    if download and name in BEIR_NAMES and not offline():
        try:
            return download_beir(name, cache_root() / "datasets")
        except OSError as exc:
            raise ResolutionError(
                f"collection '{name}' not found in {', '.join(map(str, looked))}, and downloading it failed "
                f"({exc}); pass --data-dir DIR or a folder path"
            ) from None
    hint = "" if name in BEIR_NAMES else " (not a public BEIR name either)"
    raise ResolutionError(
        f"collection '{name}' not found in {', '.join(map(str, looked))}{hint}; "
        "pass --data-dir DIR, set TWOTOWER_DATA, or give the folder's path"
    )


def download_beir(name: str, target_root: Path) -> Path:
    """Download and unpack the public BEIR archive of ``name`` into ``target_root/name``."""
    target_root.mkdir(parents=True, exist_ok=True)
    url = BEIR_URL.format(name=name)
    with tempfile.TemporaryDirectory(dir=target_root) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        with urllib.request.urlopen(url, timeout=30) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        unpacked = Path(tmp) / name
        if not is_collection_dir(unpacked):
            raise OSError(f"archive {url} has no {name}/corpus.jsonl")
        final = target_root / name
        unpacked.replace(final)
    return final
