"""Downloading a registry checkpoint (engine/hub.py) once, resumably, and checking its sha256.

Hugging Face repos go through ``huggingface_hub.hf_hub_download``: its cache (HF_HOME / HF_HUB_CACHE, or
``cache_dir``), HF_ENDPOINT, HF_HUB_OFFLINE, progress bars, and a dropped connection resumed where it broke
(HTTP Range requests, up to 5 times without progress; huggingface_hub >= 1.0 deletes what a failed pull got,
so a pull that gives up starts over next time). The file's sha256 must equal the hub's metadata for it
(an LFS file's ETag is the sha256 of its content; huggingface_hub names the cached blob after it) and the
registry's known digest where it has one; a download that does not is deleted and refused by name.

NGC-only models come from ``$OUVIR_NGC_ENDPOINT`` (default https://api.ngc.nvidia.com) through huggingface_hub's
same downloader into ``<cache>/ngc/``, where a failed pull's ``.incomplete`` file stays for the next to resume.
NGC's file URL carries no digest, so such a file is checked against a known one only; without one
``Download.checked`` is empty and ``ouvir models pull`` says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ouvir.engine.bundle import sha256_file
from ouvir.engine.hub import HubModel

NGC_ENV = "OUVIR_NGC_ENDPOINT"
NGC_ENDPOINT = "https://api.ngc.nvidia.com"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class HubError(RuntimeError):
    """A checkpoint that cannot be downloaded, or whose bytes are not the published ones (the message says which)."""


@dataclass(frozen=True)
class Download:
    path: Path  # the checkpoint in the cache
    sha256: str
    commit: str | None  # the hub commit the revision resolved to (None: NGC)
    checked: tuple[str, ...]  # what the sha256 was checked against (empty: nothing publishes a digest for it)


def download(model: HubModel, cache_dir: str | Path | None = None) -> Download:
    """``model``'s checkpoint, downloaded into the cache unless it is there, its sha256 checked."""
    from huggingface_hub import constants

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    if model.repo_id:
        path, hub_sha256, commit = _from_hf(model, cache)
    else:
        path, hub_sha256, commit = _from_ngc(model, cache), None, None
    got = sha256_file(path)
    expected = [(hub_sha256, "the hub's metadata"), (model.sha256, "ouvir's registry")]
    for want, where in expected:
        if want is not None and want != got:
            _delete(path)
            raise HubError(f"{path}: sha256 {got} is not {want} ({where} for {model.source}/{model.filename}): the "
                           f"download is corrupt and was deleted; `ouvir models pull {model.name}` fetches it again")
    return Download(path, got, commit, tuple(where for want, where in expected if want is not None))


def _offline_or_unreachable(endpoint: str) -> str:
    from huggingface_hub import constants

    return "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else f"{endpoint} cannot be reached"


def _from_hf(model: HubModel, cache: Path) -> tuple[Path, str | None, str]:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = f"{model.repo_id}/{model.filename} ({model.revision})"
    try:
        path = Path(hf_hub_download(model.repo_id, model.filename, revision=model.revision, cache_dir=cache))
    except LocalEntryNotFoundError as e:
        raise HubError(f"{model.name}: {_offline_or_unreachable(constants.ENDPOINT)} and {what} is not in the "
                       f"Hugging Face cache at {cache}: connect (HF_ENDPOINT names the hub) or put it there") from e
    except Exception as e:  # HTTP statuses, sizes, and transport errors (their types differ across versions)
        raise HubError(f"{model.name}: downloading {what} from {constants.ENDPOINT} into {cache} failed ({e})") from e
    commit = path.parent.name  # snapshots/<commit>/<filename>
    blob = path.resolve()
    if blob.parent.name == "blobs":  # the ETag huggingface_hub got from the hub when it downloaded the file
        etag = blob.name
    else:  # a cache without symlinks keeps no ETag: ask the hub
        url = hf_hub_url(model.repo_id, model.filename, revision=commit)
        etag = get_hf_file_metadata(url).etag or ""
    return path, etag if _SHA256.fullmatch(etag) else None, commit


def _from_ngc(model: HubModel, cache: Path) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import http_get

    target = cache / "ngc" / Path(*model.ngc.split("/")) / model.filename
    if target.is_file():
        return target
    endpoint = os.environ.get(NGC_ENV, NGC_ENDPOINT).rstrip("/")
    partial = target.with_name(target.name + ".incomplete")
    if constants.HF_HUB_OFFLINE:
        raise HubError(f"{model.name}: {_offline_or_unreachable(endpoint)} and {model.filename} is not in the "
                       f"cache at {target}")
    url = f"{endpoint}/v2/models/{model.ngc}/files/{model.filename}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "ab") as f:
        try:
            http_get(url, f, resume_size=f.tell(), displayed_filename=model.filename)
        except Exception as e:  # the downloader's transport errors differ across huggingface_hub versions
            raise HubError(f"{model.name}: downloading {url} into {target} failed ({e}); the {f.tell()} bytes "
                           f"so far stay in {partial} and the next pull resumes from there") from e
    partial.replace(target)
    return target


def _delete(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
