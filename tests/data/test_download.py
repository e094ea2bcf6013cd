"""`download`: archives (given or fetched) -> verified -> safely extracted raw layout -> prepare.

The network is replaced only where it is opened: `download.open_url` for HTTP, and gdown's two
entry points for Google Drive. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import urllib.error
import zipfile
from pathlib import Path

import gdown
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rawdata import FMB_IDS, MFNET_IDS, PST900_IDS, make_tar, make_zip

from sartm.cli import cli
from sartm.data import download as dl
from sartm.data.common import DataError, load_meta, read_manifest
from sartm.data.download import DigestError, DownloadError, Mirror, Remote, verify_archive

FMB_MIRROR = "https://example.org/fmb"
# gdown's own record type (its module is shadowed by the function gdown.download)
DriveFile = importlib.import_module("gdown.download").GoogleDriveFileToDownload


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["data", *args], catch_exceptions=False)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_partials(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if ".partial-" in p.name]


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int, length: int, fail_after: int | None) -> None:
        super().__init__(body)
        self.status = status
        self.headers = {"Content-Length": str(length)}
        self.fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self.fail_after is not None:
            size = min(size if size > 0 else self.fail_after, self.fail_after - self.tell())
        return super().read(size)


class FakeServer:
    """Stands in for `open_url`: serves local files by URL, honouring Range like a real server."""

    def __init__(
        self,
        files: dict[str, Path],
        *,
        ranges: bool = True,
        fail_after: int | None = None,
        short_by: int = 0,
    ) -> None:
        self.files, self.ranges, self.fail_after, self.short_by = (
            files,
            ranges,
            fail_after,
            short_by,
        )
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, *, headers: dict[str, str], timeout: float = 60.0) -> FakeResponse:
        self.calls.append((url, dict(headers)))
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        data = self.files[url].read_bytes()
        start = int(headers["Range"][6:-1]) if self.ranges and "Range" in headers else 0
        body = data[start:]
        status = 206 if start else 200
        return FakeResponse(body[: len(body) - self.short_by], status, len(body), self.fail_after)


# --- archives the user already has -----------------------------------------------------------


def test_mfnet_archive_to_prepared(tmp_path, make_mfnet):
    src = make_mfnet(tmp_path / "src" / "ir_seg_dataset")
    archive = make_zip(src.parent, tmp_path / "ir_seg_dataset.zip")
    root = tmp_path / "data"
    result = run(
        "download", "mfnet", "--archive", str(archive), "--root", str(root), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "sha256 recorded" in result.output
    raw = root / "raw" / "mfnet"
    assert {p.name for p in raw.iterdir()} >= {
        "images",
        "labels",
        "train.txt",
        "test_day.txt",
        "sartm-source.json",
    }
    assert (root / "archives" / "mfnet" / "SHA256SUMS").read_text() == (
        f"{sha256(archive)}  ir_seg_dataset.zip\n"
    )
    assert no_partials(root / "raw")
    result = run("prepare", "mfnet", "--root", str(root), "--no-progress")
    assert result.exit_code == 0, result.output
    meta = load_meta(root / "processed" / "mfnet")
    assert meta["splits"] == {s: len(v) for s, v in MFNET_IDS.items()}
    rows = read_manifest(root / "processed" / "mfnet")
    assert {r["subset"] for r in rows if r["split"] == "test"} == {"day", "night"}
    label = np.array(Image.open(root / "processed" / "mfnet" / rows[0]["label"]))
    assert set(np.unique(label)) == set(range(9))


def test_pst900_archive_with_wrapper_and_junk(tmp_path, make_pst900):
    src = make_pst900(tmp_path / "src" / "PST900_RGBT_Dataset")
    (tmp_path / "src" / "__MACOSX" / "train" / "rgb").mkdir(parents=True)  # macOS resource fork
    archive = make_zip(tmp_path / "src", tmp_path / "PST900_RGBT_Dataset.zip")
    root = tmp_path / "data"
    result = run(
        "download", "pst900", "--archive", str(archive), "--root", str(root), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    raw = root / "raw" / "pst900"
    assert sorted(p.name for p in (raw / "train").iterdir()) == sorted(
        p.name for p in (src / "train").iterdir()
    )
    run("prepare", "pst900", "--root", str(root), "--no-progress")
    assert load_meta(root / "processed" / "pst900")["splits"] == {
        s: len(v) for s, v in PST900_IDS.items()
    }


def test_fmb_two_archives_one_split_each(tmp_path, make_fmb):
    """One archive holds train/..., the other only a split's folders: its name gives the split."""
    make_fmb(tmp_path / "a", {"train": FMB_IDS["train"]})
    make_fmb(tmp_path / "b", {"test": FMB_IDS["test"]})
    first = make_zip(tmp_path / "a", tmp_path / "fmb-part1.zip", wrapper="FMB")
    second = make_tar(tmp_path / "b" / "test", tmp_path / "test.tar.gz")
    root = tmp_path / "data"
    result = run(
        "download",
        "fmb",
        "--archive",
        str(first),
        "--archive",
        str(second),
        "--root",
        str(root),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in (root / "raw" / "fmb").iterdir()} == {
        "train",
        "test",
        "sartm-source.json",
    }
    run("prepare", "fmb", "--root", str(root), "--no-progress")
    meta = load_meta(root / "processed" / "fmb")
    assert meta["splits"] == {"train": 2, "test": 2} and len(meta["classes"]) == 15


def test_rerun_is_a_noop(tmp_path, make_mfnet):
    archive = make_zip(make_mfnet(tmp_path / "src"), tmp_path / "mf.zip")
    root = tmp_path / "data"
    run("download", "mfnet", "--archive", str(archive), "--root", str(root), "--no-progress")
    marker = root / "raw" / "mfnet" / "images" / "00001D.png"
    stamp = marker.stat().st_mtime_ns
    result = run("download", "mfnet", "--archive", str(archive), "--root", str(root))
    assert "already extracted" in result.output and marker.stat().st_mtime_ns == stamp
    result = run(
        "download",
        "mfnet",
        "--archive",
        str(archive),
        "--root",
        str(root),
        "--force",
        "--no-progress",
    )
    assert result.exit_code == 0 and "sha256 matches" in result.output


# --- verification ----------------------------------------------------------------------------


def test_published_md5_mismatch(tmp_path, make_fmb):
    archive = make_zip(make_fmb(tmp_path / "src"), tmp_path / "train.zip")
    root = tmp_path / "data"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "download",
            "fmb",
            "--archive",
            str(archive),
            "--root",
            str(root),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert "md5 mismatch: expected 896c457d6fadb828fced86d7c0e0d66f" in result.output
    assert f"found {md5(archive)}" in result.output
    assert not (root / "raw" / "fmb").exists() and no_partials(root / "raw")
    assert not (root / "archives" / "fmb" / "SHA256SUMS").exists()


def fmb_http_mirror(monkeypatch, train: Path, test: Path) -> None:
    mirror = Mirror(
        name="test-mirror",
        page=FMB_MIRROR,
        files=(
            Remote("train.zip", f"{FMB_MIRROR}/train.zip", "http", f"md5:{md5(train)}"),
            Remote("test.zip", f"{FMB_MIRROR}/test.zip", "http", f"md5:{md5(test)}"),
        ),
    )
    monkeypatch.setitem(dl.SOURCES, "fmb", (mirror,))


def fmb_archives(tmp_path: Path, make_fmb) -> tuple[Path, Path]:
    src = make_fmb(tmp_path / "src")
    (tmp_path / "zips").mkdir()
    train = make_zip(src / "train", tmp_path / "zips" / "train.zip", wrapper="train")
    test = make_zip(src / "test", tmp_path / "zips" / "test.zip", wrapper="test")
    return train, test


def test_published_md5_match(tmp_path, make_fmb, monkeypatch):
    train, test = fmb_archives(tmp_path, make_fmb)
    fmb_http_mirror(monkeypatch, train, test)
    root = tmp_path / "data"
    result = run(
        "download",
        "fmb",
        "--archive",
        str(train),
        "--archive",
        str(test),
        "--root",
        str(root),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("md5 matches the published digest") == 2


def test_sha256_recorded_on_first_use_then_verified(tmp_path):
    archive = tmp_path / "PST900_RGBT_Dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "first")
    root = tmp_path / "data"
    first = verify_archive("pst900", archive, root=root, progress=False)
    sums = root / "archives" / "pst900" / "SHA256SUMS"
    assert "recorded" in first.checks[0] and first.sha256 == sha256(archive)
    assert sums.read_text() == f"{sha256(archive)}  PST900_RGBT_Dataset.zip\n"
    again = verify_archive("pst900", archive, root=root, progress=False)
    assert "matches" in again.checks[0]
    recorded = sha256(archive)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "changed")
    with pytest.raises(DigestError) as err:
        verify_archive("pst900", archive, root=root, progress=False)
    message = str(err.value)
    assert f"expected {recorded}" in message and f"found {sha256(archive)}" in message
    assert str(sums) in message and str(archive) in message


# --- fetching over HTTP (resumable) ----------------------------------------------------------


def test_http_fetch_then_extract(tmp_path, make_fmb, monkeypatch):
    train, test = fmb_archives(tmp_path, make_fmb)
    fmb_http_mirror(monkeypatch, train, test)
    server = FakeServer({f"{FMB_MIRROR}/train.zip": train, f"{FMB_MIRROR}/test.zip": test})
    monkeypatch.setattr(dl, "open_url", server)
    root = tmp_path / "data"
    result = run("download", "fmb", "--root", str(root), "--no-progress")
    assert result.exit_code == 0, result.output
    assert [url for url, _ in server.calls] == [f"{FMB_MIRROR}/train.zip", f"{FMB_MIRROR}/test.zip"]
    assert all(h["User-Agent"].startswith("sartm/") for _, h in server.calls)
    kept = root / "archives" / "fmb"
    assert (kept / "train.zip").read_bytes() == train.read_bytes()
    assert not list(kept.glob("*.part"))
    assert (root / "raw" / "fmb" / "test" / "Infrared").is_dir()
    result = run("download", "fmb", "--root", str(root), "--force", "--no-progress")
    assert result.exit_code == 0 and len(server.calls) == 2  # kept archives are reused


@pytest.mark.parametrize("ranges", [True, False])
def test_http_resume(tmp_path, monkeypatch, ranges):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(np.random.default_rng(0).bytes(300_000))
    target = tmp_path / "out" / "payload.bin"
    target.parent.mkdir()
    (target.parent / "payload.bin.part").write_bytes(payload.read_bytes()[:100_000])
    server = FakeServer({"https://x/p": payload}, ranges=ranges)
    monkeypatch.setattr(dl, "open_url", server)
    dl.http_download("https://x/p", target, progress=False)
    assert server.calls[0][1]["Range"] == "bytes=100000-"
    assert target.read_bytes() == payload.read_bytes()
    assert not (target.parent / "payload.bin.part").exists()


def test_http_interrupted_then_resumed(tmp_path, monkeypatch):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(np.random.default_rng(1).bytes(250_000))
    target = tmp_path / "out" / "payload.bin"
    part = target.parent / "payload.bin.part"
    monkeypatch.setattr(dl, "open_url", FakeServer({"https://x/p": payload}, fail_after=70_000))
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        dl.http_download("https://x/p", target, progress=False)
    assert not target.exists() and part.stat().st_size == 70_000
    server = FakeServer({"https://x/p": payload})
    monkeypatch.setattr(dl, "open_url", server)
    dl.http_download("https://x/p", target, progress=False)
    assert server.calls[0][1]["Range"] == "bytes=70000-"
    assert target.read_bytes() == payload.read_bytes()


def test_http_short_body_is_incomplete(tmp_path, monkeypatch):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"x" * 5000)
    monkeypatch.setattr(dl, "open_url", FakeServer({"https://x/p": payload}, short_by=10))
    with pytest.raises(DownloadError, match="incomplete download"):
        dl.http_download("https://x/p", tmp_path / "p.bin", progress=False)
    assert not (tmp_path / "p.bin").exists()


def test_http_404_gives_manual_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "open_url", FakeServer({}))
    result = CliRunner().invoke(
        cli, ["data", "download", "fmb", "--root", str(tmp_path / "d"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "HTTP 404" in result.output
    assert "sartm data download fmb --archive PATH/TO/train.zip --archive PATH/TO/test.zip" in (
        result.output
    )
    assert "https://github.com/JinyuanLiu-CV/SegMiF" in result.output  # the other location too
    assert not (tmp_path / "d" / "raw" / "fmb").exists()


# --- Google Drive ----------------------------------------------------------------------------


def test_gdrive_failure_prints_manual_steps(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed this file")

    monkeypatch.setattr(gdown, "download", refuse)
    result = CliRunner().invoke(cli, ["data", "download", "pst900", "--root", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "Google Drive download failed (Too many users" in result.output
    assert "https://drive.google.com/file/d/1f4QT7RFfHIEMYW80jrbBs3qo5qjKou9M" in result.output
    assert "sartm data download pst900 --archive PATH/TO/PST900_RGBT_Dataset.zip" in result.output


def test_gdrive_file_download(tmp_path, make_pst900, monkeypatch):
    archive = make_zip(
        make_pst900(tmp_path / "src"), tmp_path / "upload.zip", wrapper="PST900_RGBT_Dataset"
    )
    seen = {}

    def fake_download(*, id, output, quiet, resume):
        seen.update(id=id, resume=resume)
        Path(output).write_bytes(archive.read_bytes())
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    root = tmp_path / "data"
    result = run("download", "pst900", "--root", str(root), "--no-progress")
    assert result.exit_code == 0, result.output
    assert seen == {"id": "1f4QT7RFfHIEMYW80jrbBs3qo5qjKou9M", "resume": True}
    assert (root / "archives" / "pst900" / "PST900_RGBT_Dataset.zip").is_file()
    assert (root / "raw" / "pst900" / "test" / "labels").is_dir()


def test_gdrive_folder_takes_only_the_named_file(tmp_path, make_mfnet, monkeypatch):
    archive = make_zip(make_mfnet(tmp_path / "src"), tmp_path / "x.zip", wrapper="ir_seg_dataset")
    listing = [
        DriveFile("id-readme", "README.txt", "README.txt"),
        DriveFile("id-data", "ir_seg_dataset.zip", "x"),
    ]
    fetched = []

    def fake_folder(*, id, skip_download, quiet):
        assert id == "18BQFWRfhXzSuMloUmtiBRFrr6NSrf8Fw" and skip_download
        return listing

    def fake_download(*, id, output, quiet, resume):
        fetched.append(id)
        Path(output).write_bytes(archive.read_bytes())
        return output

    monkeypatch.setattr(gdown, "download_folder", fake_folder)
    monkeypatch.setattr(gdown, "download", fake_download)
    root = tmp_path / "data"
    result = run("download", "mfnet", "--root", str(root), "--no-progress")
    assert result.exit_code == 0, result.output
    assert fetched == ["id-data"]
    assert (root / "raw" / "mfnet" / "images").is_dir()


def test_share_page_mirror_is_manual(tmp_path):
    result = CliRunner().invoke(
        cli, ["data", "download", "mfnet", "--mirror", "rtfnet", "--root", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "cannot be fetched automatically" in result.output
    assert "http://gofile.me/4jm56/CfukComo1" in result.output
    with pytest.raises(DataError, match="unknown mirror 'nope'"):
        dl.download("mfnet", root=tmp_path, mirror="nope", log=lambda _: None)


# --- bad archives ------------------------------------------------------------------------------


def test_archive_without_the_layout(tmp_path, make_pst900):
    archive = make_zip(make_pst900(tmp_path / "src"), tmp_path / "wrong.zip")
    root = tmp_path / "data"
    with pytest.raises(DataError, match="wrong.zip: does not contain the mfnet layout"):
        dl.download("mfnet", root=root, archives=[archive], progress=False, log=lambda _: None)
    assert not (root / "raw" / "mfnet").exists() and no_partials(root / "raw")


def test_unsafe_archive_writes_nothing_outside(tmp_path, make_mfnet):
    src = make_mfnet(tmp_path / "src")
    archive = make_zip(src, tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../escaped.txt", "evil")
    root = tmp_path / "data"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "download",
            "mfnet",
            "--archive",
            str(archive),
            "--root",
            str(root),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1 and "contains '..'" in result.output
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "raw" / "mfnet").exists() and no_partials(root / "raw")


def test_drive_id():
    assert dl._drive_id("https://drive.google.com/file/d/abc-1_x/view?usp=sharing") == "abc-1_x"
    assert dl._drive_id("https://drive.google.com/drive/folders/F0ld3r?usp=sharing") == "F0ld3r"
    assert dl._drive_id("https://drive.google.com/uc?id=XyZ") == "XyZ"
    with pytest.raises(DownloadError):
        dl._drive_id("https://example.org/file.zip")
