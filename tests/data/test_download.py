"""`download`: archives (given or fetched) -> verified -> safely extracted raw layout -> prepare.

HTTP downloads run for real against a small `http.server` on 127.0.0.1 (Range requests, 206 and
416 answers, bodies cut short with or without a Content-Length, chunked bodies); only gdown's two
entry points are replaced for Google Drive. Nothing here leaves the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gdown
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rawdata import FMB_IDS, MFNET_IDS, PST900_IDS, make_tar, make_zip

from sartm.cli import cli
from sartm.data import builtin
from sartm.data import download as dl
from sartm.data.builtin import Mirror, Remote
from sartm.data.common import DataError, load_meta, read_manifest
from sartm.data.download import DigestError, DownloadError, verify_archive

# gdown's own record type (its module is shadowed by the function gdown.download)
DriveFile = importlib.import_module("gdown.download").GoogleDriveFileToDownload


def set_mirrors(monkeypatch, dataset: str, mirrors: tuple[Mirror, ...]) -> None:
    """The dataset's entry with other mirrors, for the test (the registry is restored after)."""
    entry = dataclasses.replace(builtin.BUILTIN[dataset], mirrors=mirrors)
    monkeypatch.setitem(builtin.BUILTIN, dataset, entry)


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["data", *args], catch_exceptions=False)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_partials(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if ".partial-" in p.name]


@dataclass
class Served:
    """What the local server serves and how: files by path; ranges (honour Range), length (send
    Content-Length), chunked (Transfer-Encoding: chunked), cut_after (close after that many body
    bytes); calls records (path, headers) of every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    length: bool = True
    chunked: bool = False
    cut_after: int | None = None
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        served: Served = self.server.served  # type: ignore[attr-defined]
        served.calls.append((self.path, dict(self.headers)))
        data = served.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and served.ranges:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        cut = len(body) if served.cut_after is None else min(served.cut_after, len(body))
        if served.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif served.length:
            self.send_header("Content-Length", str(len(body)))
        if cut < len(body) or not (served.length or served.chunked):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if served.chunked:  # one chunk announced whole, then cut short
            self.wfile.write(f"{len(body):x}\r\n".encode() + body[:cut])
            if cut == len(body):
                self.wfile.write(b"\r\n0\r\n\r\n")
        else:
            self.wfile.write(body[:cut])
        self.wfile.flush()


@pytest.fixture
def server(monkeypatch) -> Iterator[Served]:
    """A real HTTP server on 127.0.0.1 in a thread; set its Served fields to change its answers."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy in the environment must not be used
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.served = Served(url=f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.served  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


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


def fmb_http_mirror(monkeypatch, base: str, train: Path, test: Path) -> None:
    """FMB's first mirror moved to `base` (with the archives' md5s); the real mirrors follow."""
    mirror = Mirror(
        name="test-mirror",
        page=base,
        files=(
            Remote("train.zip", f"{base}/fmb/train.zip", "http", f"md5:{md5(train)}"),
            Remote("test.zip", f"{base}/fmb/test.zip", "http", f"md5:{md5(test)}"),
        ),
    )
    set_mirrors(monkeypatch, "fmb", (mirror, *builtin.BUILTIN["fmb"].mirrors))


def fmb_archives(tmp_path: Path, make_fmb) -> tuple[Path, Path]:
    src = make_fmb(tmp_path / "src")
    (tmp_path / "zips").mkdir()
    train = make_zip(src / "train", tmp_path / "zips" / "train.zip", wrapper="train")
    test = make_zip(src / "test", tmp_path / "zips" / "test.zip", wrapper="test")
    return train, test


def test_published_md5_match(tmp_path, make_fmb, monkeypatch):
    train, test = fmb_archives(tmp_path, make_fmb)
    fmb_http_mirror(monkeypatch, "http://127.0.0.1:9", train, test)  # --archive: not contacted
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


def test_sha256_recorded_only_after_first_use_then_verified(tmp_path):
    archive = tmp_path / "PST900_RGBT_Dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "first")
    root = tmp_path / "data"
    sums = root / "archives" / "pst900" / "SHA256SUMS"
    first = verify_archive("pst900", archive, root=root, progress=False)
    assert first.first_use and first.sha256 == sha256(archive)
    assert not sums.exists()  # noted, not yet recorded: the archive has not proved good
    assert dl.record_first_use("pst900", [first], root=root) == [
        f"{archive}: sha256 recorded in {sums} (first use)"
    ]
    assert sums.read_text() == f"{sha256(archive)}  PST900_RGBT_Dataset.zip\n"
    again = verify_archive("pst900", archive, root=root, progress=False)
    assert not again.first_use and "matches" in again.checks[0]
    recorded = sha256(archive)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "changed")
    with pytest.raises(DigestError) as err:
        verify_archive("pst900", archive, root=root, progress=False)
    message = str(err.value)
    assert f"expected {recorded}" in message and f"found {sha256(archive)}" in message
    assert str(sums) in message and str(archive) in message


def test_damaged_first_archive_does_not_poison_its_digest(tmp_path, make_pst900):
    """A cut-short first copy fails to extract and records nothing; the good copy then passes."""
    (tmp_path / "good").mkdir()
    (tmp_path / "cut").mkdir()
    good = make_zip(make_pst900(tmp_path / "src"), tmp_path / "good" / "PST900_RGBT_Dataset.zip")
    cut = tmp_path / "cut" / good.name
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    root = tmp_path / "data"
    sums = root / "archives" / "pst900" / "SHA256SUMS"
    args = ["data", "download", "pst900", "--root", str(root), "--no-progress", "--archive"]
    result = CliRunner().invoke(cli, [*args, str(cut)])
    assert result.exit_code == 1
    assert f"the sha256 of {cut} was not recorded" in result.output
    assert not sums.exists() and not (root / "raw" / "pst900").exists()
    result = CliRunner().invoke(cli, [*args, str(good)])
    assert result.exit_code == 0, result.output
    assert sums.read_text() == f"{sha256(good)}  {good.name}\n"


# --- fetching over HTTP (resumable), from a real server on 127.0.0.1 ---------------------------


def test_http_fetch_then_extract(tmp_path, make_fmb, monkeypatch, server):
    train, test = fmb_archives(tmp_path, make_fmb)
    fmb_http_mirror(monkeypatch, server.url, train, test)
    server.files.update({"/fmb/train.zip": train.read_bytes(), "/fmb/test.zip": test.read_bytes()})
    root = tmp_path / "data"
    result = run("download", "fmb", "--root", str(root), "--no-progress")
    assert result.exit_code == 0, result.output
    assert [path for path, _ in server.calls] == ["/fmb/train.zip", "/fmb/test.zip"]
    assert all(h["User-Agent"].startswith("sartm/") for _, h in server.calls)
    kept = root / "archives" / "fmb"
    assert (kept / "train.zip").read_bytes() == train.read_bytes()
    assert not list(kept.glob("*.part"))
    assert (root / "raw" / "fmb" / "test" / "Infrared").is_dir()
    result = run("download", "fmb", "--root", str(root), "--force", "--no-progress")
    assert result.exit_code == 0 and len(server.calls) == 2  # kept archives are reused


def random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.mark.parametrize("ranges", [True, False])
def test_http_resume(tmp_path, server, ranges):
    """A partial file resumes with a Range request (206), or starts over when the server
    answers 200 with the whole file."""
    payload = random_bytes(300_000, 0)
    server.files["/p"], server.ranges = payload, ranges
    target = tmp_path / "out" / "payload.bin"
    target.parent.mkdir()
    (target.parent / "payload.bin.part").write_bytes(payload[:100_000])
    dl.http_download(f"{server.url}/p", target, progress=False)
    assert server.calls[0][1]["Range"] == "bytes=100000-"
    assert target.read_bytes() == payload
    assert not (target.parent / "payload.bin.part").exists()


def test_http_interrupted_then_resumed(tmp_path, server):
    payload = random_bytes(250_000, 1)
    server.files["/p"], server.cut_after = payload, 70_000
    target = tmp_path / "out" / "payload.bin"
    part = target.parent / "payload.bin.part"
    with pytest.raises(DownloadError, match="run the same command again to resume") as err:
        dl.http_download(f"{server.url}/p", target, progress=False)
    assert "70000 of 250000 bytes" in str(err.value)
    assert not target.exists() and part.read_bytes() == payload[:70_000]
    server.cut_after = None
    dl.http_download(f"{server.url}/p", target, progress=False)
    assert server.calls[1][1]["Range"] == "bytes=70000-"
    assert target.read_bytes() == payload and not part.exists()


def test_http_chunked_body_cut_short(tmp_path, server):
    """http.client raises IncompleteRead (not an OSError) for a cut chunk: one clear error."""
    payload = random_bytes(200_000, 2)
    server.files["/p"], server.chunked, server.cut_after = payload, True, 50_000
    target = tmp_path / "payload.bin"
    with pytest.raises(DownloadError, match="interrupted after .* run the same command again"):
        dl.http_download(f"{server.url}/p", target, progress=False)
    assert not target.exists()
    server.cut_after = None
    dl.http_download(f"{server.url}/p", target, progress=False)
    assert target.read_bytes() == payload


def test_http_partial_longer_than_remote_starts_over(tmp_path, server):
    """416 (range not satisfiable): the stale partial file is dropped and the file fetched whole."""
    payload = random_bytes(40_000, 3)
    server.files["/p"] = payload
    target = tmp_path / "payload.bin"
    (tmp_path / "payload.bin.part").write_bytes(b"x" * 50_000)
    dl.http_download(f"{server.url}/p", target, progress=False)
    assert [h.get("Range") for _, h in server.calls] == ["bytes=50000-", None]
    assert target.read_bytes() == payload


def test_http_short_body_is_incomplete(tmp_path, server):
    server.files["/p"], server.cut_after = b"x" * 5000, 4990
    with pytest.raises(DownloadError, match=r"incomplete download \(4990 of 5000 bytes\)"):
        dl.http_download(f"{server.url}/p", tmp_path / "p.bin", progress=False)
    assert not (tmp_path / "p.bin").exists()


def test_http_first_download_cut_short_without_length(tmp_path, make_pst900, monkeypatch, server):
    """No Content-Length: a cut body looks complete, so only extraction can tell; its digest is
    not recorded, and once deleted the good download passes."""
    good = make_zip(make_pst900(tmp_path / "src"), tmp_path / "good.zip").read_bytes()
    name = "PST900_RGBT_Dataset.zip"
    remote = Remote(name, f"{server.url}/pst900.zip", "http")
    set_mirrors(monkeypatch, "pst900", (Mirror("local", server.url, (remote,)),))
    server.files["/pst900.zip"], server.length, server.cut_after = good, False, len(good) // 2
    root = tmp_path / "data"
    kept = root / "archives" / "pst900" / name
    args = ["data", "download", "pst900", "--root", str(root), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert f"the sha256 of {kept} was not recorded" in result.output
    assert not (kept.parent / "SHA256SUMS").exists()
    kept.unlink()  # as the message says
    server.cut_after = None
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (
        kept.parent / "SHA256SUMS"
    ).read_text() == f"{hashlib.sha256(good).hexdigest()}  {name}\n"
    assert (root / "raw" / "pst900" / "train" / "rgb").is_dir()


def test_http_404_gives_manual_instructions(tmp_path, monkeypatch, make_fmb, server):
    train, test = fmb_archives(tmp_path, make_fmb)
    fmb_http_mirror(monkeypatch, server.url, train, test)  # the server has no files: 404
    result = CliRunner().invoke(
        cli, ["data", "download", "fmb", "--root", str(tmp_path / "d"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "HTTP 404" in result.output and server.calls[0][0] == "/fmb/train.zip"
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


def test_force_never_replaces_a_raw_folder_of_the_user(tmp_path, make_mfnet):
    """A raw folder sartm did not extract is left alone without --force and refused with it;
    an archive inside the raw folder it would replace is refused too."""
    archive = make_zip(make_mfnet(tmp_path / "src"), tmp_path / "mf.zip")
    root = tmp_path / "data"
    raw = make_mfnet(root / "raw" / "mfnet")  # extracted by hand
    (raw / "my-notes.txt").write_text("keep")
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    args = ["data", "download", "mfnet", "--archive", str(archive), "--root", str(root)]
    result = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0 and "not extracted by sartm; left as it is" in result.output
    result = CliRunner().invoke(cli, [*args, "--no-progress", "--force"])
    assert result.exit_code == 1
    assert f"{raw}: exists and was not written by sartm" in result.output
    assert "even with --force" in result.output
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before
    assert not (root / "archives" / "mfnet" / "SHA256SUMS").exists()

    other = tmp_path / "other"
    assert run("download", "mfnet", "--archive", str(archive), "--root", str(other)).exit_code == 0
    inside = make_zip(make_mfnet(tmp_path / "src2"), other / "raw" / "mfnet" / "copy.zip")
    with pytest.raises(DataError, match="the raw folder overlaps the archive") as err:
        dl.download("mfnet", root=other, archives=[inside], force=True, log=lambda _: None)
    assert "sha256" not in str(err.value)
    assert inside.is_file()


def test_drive_id():
    assert dl._drive_id("https://drive.google.com/file/d/abc-1_x/view?usp=sharing") == "abc-1_x"
    assert dl._drive_id("https://drive.google.com/drive/folders/F0ld3r?usp=sharing") == "F0ld3r"
    assert dl._drive_id("https://drive.google.com/uc?id=XyZ") == "XyZ"
    with pytest.raises(DownloadError):
        dl._drive_id("https://example.org/file.zip")
