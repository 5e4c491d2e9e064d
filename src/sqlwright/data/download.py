"""Download a public text-to-SQL benchmark, verify it and unpack it into a benchmark directory.

``download(name, dest)`` leaves the archive at ``dest/<filename>`` and unpacks it into ``dest``;
zip archives found inside it (BIRD's ``*_databases.zip``) are unpacked next to themselves, once,
then deleted. It returns the folder to pass as ``--benchmark``:

- ``spider``     -> ``dest/spider_data/`` (Spider layout: ``dev.json``, ``train_spider.json``,
  ``tables.json``, ``database/<db>/<db>.sqlite``)
- ``bird-dev``   -> ``dest/dev_20240627/`` (BIRD layout: ``dev.json``,
  ``dev_databases/<db>/<db>.sqlite``)
- ``bird-train`` -> ``dest/train/`` (BIRD layout: ``train.json``, ``train_databases/...``)

A broken download stays in ``dest/<filename>.part`` and is resumed with an HTTP ``Range``
request the next time; macOS ``__MACOSX/`` entries are not unpacked.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from sqlwright.config import opt, validate, write_config
from sqlwright.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    filename: str
    layout_check: str  # glob under dest; the parent of its first match (in the archive) is returned
    size: int | None = None  # bytes
    sha256: str | None = None


DATASETS: dict[str, Archive] = {
    # Spider 1.0 (CC BY-SA 4.0): the Google Drive file linked from https://yale-lily.github.io/spider,
    # as used by stanford-crfm/helm's Spider scenario; the digest is the one several public scripts pin.
    "spider": Archive(
        "spider",
        "https://drive.usercontent.google.com/download?id=1403EGqzIDoHMdQF4c9Bkyl7dZLZ5Wt6J"
        "&export=download&confirm=t",
        "spider_data.zip", "spider_data/tables.json",
        sha256="00636695dabed6b5f4b8328a16b13e069a2f16591d5efcce57660669c85b121b",
    ),  # fmt: skip
    # BIRD (CC BY-SA 4.0): the archives of https://bird-bench.github.io, as meta-llama/llama-cookbook
    # downloads them; no published digest, and dev.zip has been re-issued (dev_20240627).
    "bird-dev": Archive(
        "bird-dev", "https://bird-bench.oss-cn-beijing.aliyuncs.com/dev.zip", "dev.zip",
        "dev*/dev_databases",
    ),  # fmt: skip
    "bird-train": Archive(
        "bird-train", "https://bird-bench.oss-cn-beijing.aliyuncs.com/train.zip", "train.zip",
        "train*/train_databases",
    ),  # fmt: skip
}


@dataclass
class DownloadConfig:
    """The options of ``sqlwright data download`` (``run_download``)."""

    name: str = opt(help="spider, bird-dev or bird-train.", argument=True)
    dest: str = opt("data", "Folder to download and unpack into.", short="-d")
    url: str | None = opt(None, "A mirror of the same archive.")
    progress: bool = opt(True, "Show a progress bar.")

    def check(self) -> list[str]:
        if self.name not in DATASETS:
            return [f"unknown dataset {self.name!r}{did_you_mean(self.name, DATASETS)}; choose from {', '.join(DATASETS)}"]
        return []


def run_download(cfg: DownloadConfig) -> Path:
    """``download`` with a ``DownloadConfig``: the benchmark directory."""
    validate(cfg)
    folder = download(cfg.name, Path(cfg.dest), url=cfg.url, progress=cfg.progress)
    write_config(cfg, Path(cfg.dest) / f"{cfg.name}.config.yaml")  # the resolved config: `--config` repeats it
    return folder


def download(
    name: str, dest: Path, *, url: str | None = None, progress: bool = True, chunk: int = 1 << 20
) -> Path:
    """Fetch, verify and unpack benchmark ``name`` into ``dest``; return the benchmark directory.

    ``url`` replaces the registry's address (a mirror); size and sha256 are still checked.
    """
    if name not in DATASETS:
        choices = ", ".join(DATASETS)
        raise UserError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; choose from {choices}")
    archive, dest = DATASETS[name], Path(dest)
    url = url or archive.url
    final, part = dest / archive.filename, dest / f"{archive.filename}.part"
    marker = dest / f".{archive.filename}.unpacked"
    if marker.is_file() and (found := _layout(dest, archive, set(marker.read_text().splitlines()))):
        return found
    dest.mkdir(parents=True, exist_ok=True)
    if not (final.is_file() and _mismatch(final, archive) is None):
        final.unlink(missing_ok=True)
        try:
            _fetch(url, part, archive.size, progress, chunk)
        except (URLError, OSError, http.client.HTTPException) as e:
            cause = e.reason if type(e) is URLError else e
            msg = f"download of {url} failed ({cause}); run the same command again to resume it"
            raise UserError(msg) from None
        if problem := _mismatch(part, archive):
            part.unlink()
            raise UserError(
                f"{url}: downloaded {archive.filename} {problem}; "
                "the partial file was deleted, run the same command again to retry"
            )
        part.replace(final)
    if progress:
        print(f"unpacking {final} ...", file=sys.stderr)
    tops = _unpack(final, dest)
    if not (found := _layout(dest, archive, tops)):
        raise UserError(
            f"{final}: unpacked, but nothing matches {dest / archive.layout_check}; "
            "the archive's layout has changed, point --benchmark at the unpacked folder by hand"
        )
    marker.write_text("\n".join(sorted(tops)))
    return found


def _layout(dest: Path, archive: Archive, tops: set[str]) -> Path | None:
    """The benchmark directory: ignores matches outside the archive's top-level entries ``tops``."""
    found = [p for p in sorted(dest.glob(archive.layout_check)) if p.relative_to(dest).parts[0] in tops]
    return found[0].parent if found else None


def _mismatch(path: Path, archive: Archive) -> str | None:
    """How ``path`` differs from the expected archive; None when size and sha256 match or are unknown."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        return f"has {size:,} bytes, expected {archive.size:,}"
    if archive.sha256 is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if h.hexdigest() != archive.sha256:
            return f"has sha256 {h.hexdigest()}, expected {archive.sha256}"
    return None


def _fetch(url: str, part: Path, size: int | None, progress: bool, chunk: int) -> None:
    """Download ``url`` into ``part``, continuing after the bytes already there if the server allows."""
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have >= size:
        if have == size:
            return
        part.unlink()
        have = 0
    headers = {"User-Agent": "sqlwright", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        resp = urlopen(Request(url, headers=headers), timeout=60)
    except HTTPError as e:
        if e.code != 416 or not have:
            raise
        part.unlink()  # the range is not satisfiable: start over
        return _fetch(url, part, size, progress, chunk)
    with resp:
        if resp.headers.get_content_type() == "text/html":
            raise UserError(
                f"{url} answered with a web page, not the archive (a quota or confirmation page?); "
                "try again later, or download the file by hand into the destination folder"
            )
        start = resp.headers.get("Content-Range", "bytes 0-").split()[-1].split("-")[0]
        if resp.status != 206 or start != str(have):
            have = 0  # the server ignored the range: restart cleanly
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length else size
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(),
        )  # fmt: skip
        bar = Progress(*columns, console=Console(stderr=True), disable=not progress)
        with open(part, "ab" if have else "wb") as f, bar:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=have)
            while block := resp.read(chunk):
                f.write(block)
                bar.advance(task, len(block))
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed after {part.stat().st_size:,} of {total:,} bytes")


def _safe(name: str, archive: Path) -> str:
    path = PureWindowsPath(name)  # sees both / and backslash as separators
    if path.drive or path.root or ".." in path.parts:
        raise UserError(
            f"{archive}: refusing to unpack member {name!r}: "
            "an absolute path or '..' would write outside the destination folder"
        )
    return name


def _unpack(archive: Path, dest: Path, nested: bool = True) -> set[str]:
    """Unpack a zip or tar.gz into ``dest``, then each zip it contained next to itself (once).

    Returns the top-level names it created in ``dest``.
    """
    try:
        if archive.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(archive) as tf:
                names = [_safe(m.name, archive) for m in tf.getmembers()]
                tf.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        else:
            with zipfile.ZipFile(archive) as zf:
                names = [_safe(n, archive) for n in zf.namelist() if not n.startswith("__MACOSX/")]
                zf.extractall(dest, names)
    except (zipfile.BadZipFile, tarfile.TarError) as e:
        msg = f"{archive}: not a valid archive ({e}); delete it and run the same command again"
        raise UserError(msg) from None
    tops = {parts[0] for n in names if (parts := PureWindowsPath(n).parts)}
    for inner in [dest / n for n in names if nested and n.endswith(".zip")]:
        inner_tops = _unpack(inner, inner.parent, nested=False)
        tops |= inner_tops if inner.parent == dest else set()
        inner.unlink()
    return tops
