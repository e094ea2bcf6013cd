"""SAM2 checkpoint downloads: only the URL opener is replaced, serving local files."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sartm.cli import cli
from sartm.model import sam2_weights as weights
from sartm.model.backbones import BACKBONES
from sartm.model.sam2_weights import HashMismatchWarning, WeightsError

REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    """A checkpoint laid out like Meta's sam2_hiera_tiny.pt, made by sam2's builder."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2/sam2_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval")
    path = tmp_path_factory.mktemp("served") / "sam2_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


class Server:
    """Stands in for urlopen: serves local files for official URLs and records the calls."""

    def __init__(self, files: dict[str, Path]):
        self.files, self.calls = files, []

    def __call__(self, url: str, timeout: float | None = None):
        self.calls.append(url)
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return REAL_URLOPEN(self.files[url].resolve().as_uri(), timeout=timeout)


def serve(monkeypatch, files: dict[str, Path]) -> Server:
    server = Server(files)
    monkeypatch.setattr(weights, "urlopen", server)
    return server


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_real_backbone_has_its_official_url_and_name():
    real = [b for b in BACKBONES if not b.startswith("test_")]
    assert sorted(e.backbone for e in weights.WEIGHTS.values()) == sorted(real)
    base = "https://dl.fbaipublicfiles.com/segment_anything_2"
    assert weights.entry("sam2_hiera_b+").url == f"{base}/072824/sam2_hiera_base_plus.pt"
    assert weights.entry("sam2.1_hiera_l").url == f"{base}/092824/sam2.1_hiera_large.pt"
    assert weights.entry("sam2_hiera_base_plus").backbone == "sam2_hiera_b+"
    assert weights.entry("sam2_hiera_large").sha256 is None
    assert weights.entry("sam2_hiera_tiny").sha256.startswith("65b50056")
    with pytest.raises(WeightsError, match="unknown checkpoint 'sam3'"):
        weights.entry("sam3")


def test_download_streams_hashes_checks_and_renames(tmp_path, monkeypatch, tiny_file):
    url = weights.entry("sam2_hiera_tiny").url
    server = serve(monkeypatch, {url: tiny_file})
    actual = sha(tiny_file)
    with pytest.warns(HashMismatchWarning, match=rf"{actual}.*Hugging Face mirror.*65b50056"):
        result = weights.download("sam2_hiera_tiny", directory=tmp_path, progress=False)
    dest = tmp_path / "sam2_hiera_tiny.pt"
    assert server.calls == [url]
    assert result.status == "mirror-mismatch" and not result.failed and result.path == dest
    assert dest.read_bytes() == tiny_file.read_bytes()
    assert (tmp_path / "sam2_hiera_tiny.pt.sha256").read_text() == f"{actual}  sam2_hiera_tiny.pt\n"
    assert not (tmp_path / "sam2_hiera_tiny.pt.part").exists()
    # Already there: no second download, just a verification.
    with pytest.warns(HashMismatchWarning):
        again = weights.download("sam2_hiera_tiny", directory=tmp_path, progress=False)
    assert server.calls == [url] and again.sha256 == actual


def test_hash_outcomes(tmp_path):
    path = tmp_path / "x.pt"
    tiny = weights.entry("sam2_hiera_tiny")
    large = weights.entry("sam2_hiera_large")
    published = dataclasses.replace(tiny, sha256="ab" * 32, sha256_source="official")
    assert weights.judge(tiny, path, tiny.sha256, None).status == "ok"
    assert weights.judge(tiny, path, "cd" * 32, None).status == "mirror-mismatch"
    assert weights.judge(published, path, "cd" * 32, None).failed
    assert weights.judge(large, path, "cd" * 32, None).status == "unverified"
    assert weights.judge(large, path, "cd" * 32, "cd" * 32).status == "recorded"
    changed = weights.judge(large, path, "cd" * 32, "ef" * 32)
    assert changed.failed and "changed" in changed.message


def test_a_file_that_is_not_a_checkpoint_leaves_nothing_behind(tmp_path, monkeypatch):
    page = tmp_path / "page.html"
    page.write_text("<html>Access denied</html>")
    serve(monkeypatch, {weights.entry("sam2_hiera_small").url: page})
    folder = tmp_path / "w"
    with pytest.warns(HashMismatchWarning), pytest.raises(WeightsError, match="not a readable"):
        weights.download("sam2_hiera_small", directory=folder, progress=False)
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == []


def test_a_checkpoint_of_another_size_is_refused(tmp_path, monkeypatch, tiny_file):
    serve(monkeypatch, {weights.entry("sam2_hiera_small").url: tiny_file})
    with pytest.warns(HashMismatchWarning), pytest.raises(WeightsError, match="not sam2_hiera_s"):
        weights.download("sam2_hiera_small", directory=tmp_path, progress=False)
    assert not (tmp_path / "sam2_hiera_small.pt").exists()


def test_short_downloads_and_http_errors_fail(tmp_path, monkeypatch, tiny_file):
    class Short:
        """A response that claims more bytes than it delivers (a dropped connection)."""

        def __init__(self, url, timeout=None):
            self.inner = REAL_URLOPEN(tiny_file.resolve().as_uri())
            self.headers = {"Content-Length": str(tiny_file.stat().st_size + 100)}

        def read(self, n):
            return self.inner.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

    monkeypatch.setattr(weights, "urlopen", Short)
    with pytest.raises(WeightsError, match=r"stopped after \d+ of \d+ bytes"):
        weights.download("sam2_hiera_tiny", directory=tmp_path, progress=False)
    assert not (tmp_path / "sam2_hiera_tiny.pt").exists()
    serve(monkeypatch, {})
    with pytest.raises(WeightsError, match="download failed.*404"):
        weights.download("sam2_hiera_tiny", directory=tmp_path, progress=False)


def test_resolve_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("SARTM_WEIGHTS", str(tmp_path / "cache"))
    local = tmp_path / "mine.pt"
    local.write_bytes(b"x")
    assert weights.resolve_checkpoint(local) == local
    with pytest.raises(
        WeightsError, match=r"not in .*cache/.*sartm weights download sam2_hiera_base_plus"
    ):
        weights.resolve_checkpoint("sam2_hiera_b+")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "sam2_hiera_base_plus.pt").write_bytes(b"x")
    assert (
        weights.resolve_checkpoint("sam2_hiera_base_plus")
        == tmp_path / "cache" / "sam2_hiera_base_plus.pt"
    )
    assert (
        weights.resolve_checkpoint("sam2_hiera_b+")
        == tmp_path / "cache" / "sam2_hiera_base_plus.pt"
    )
    with pytest.raises(WeightsError, match="neither a file nor a known name"):
        weights.resolve_checkpoint("nowhere.pt")


def test_cli_list_download_verify(tmp_path, monkeypatch, tiny_file):
    serve(monkeypatch, {weights.entry("sam2_hiera_tiny").url: tiny_file})
    runner = CliRunner()
    folder = str(tmp_path / "w")
    listed = runner.invoke(cli, ["weights", "list", "--dir", folder])
    assert listed.exit_code == 0 and "sam2_hiera_base_plus" in listed.output
    assert "072824/sam2_hiera_base_plus.pt" in listed.output

    got = runner.invoke(
        cli, ["weights", "download", "sam2_hiera_t", "--dir", folder, "--no-progress"]
    )
    assert got.exit_code == 0, got.output
    assert "WARNING" in got.output and sha(tiny_file) in got.output
    listed = runner.invoke(cli, ["weights", "list", "--dir", folder])
    tiny_line = next(
        line for line in listed.output.splitlines() if line.startswith("sam2_hiera_tiny")
    )
    assert " yes " in tiny_line

    ok = runner.invoke(cli, ["weights", "verify", "--dir", folder])
    assert ok.exit_code == 0 and "mirror-mismatch" in ok.output
    # A file that changed after download fails verification.
    dest = Path(folder) / "sam2_hiera_tiny.pt"
    with open(dest, "r+b") as f:
        f.seek(os.path.getsize(dest) // 2)
        f.write(b"\x00corrupt")
    bad = runner.invoke(cli, ["weights", "verify", "--dir", folder])
    assert bad.exit_code == 1 and "changed" in bad.output
    missing = runner.invoke(cli, ["weights", "verify", "sam2_hiera_small", "--dir", folder])
    assert missing.exit_code == 1 and "not downloaded" in missing.output
