"""Image builds: content-hash tags, rebuild only on change, clear failures, offline mirror."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.images.bootstrap import host_mirror
from orchestrator.images.builder import ImageBuilder, ImageBuildError, context_hash

REPO = Path(__file__).resolve().parent.parent


def test_context_hash_follows_content_mode_and_parent(tmp_path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "files").mkdir()
    script = tmp_path / "files" / "run.sh"
    script.write_text("echo hi\n")
    first = context_hash(tmp_path, "base:1")
    assert context_hash(tmp_path, "base:1") == first
    assert context_hash(tmp_path, "base:2") != first
    script.chmod(0o755)
    assert context_hash(tmp_path, "base:1") != first
    script.chmod(0o644)
    assert context_hash(tmp_path, "base:1") == first
    script.write_text("echo bye\n")
    assert context_hash(tmp_path, "base:1") != first


def test_built_images_are_current_and_a_change_makes_a_new_tag(
    tmp_path, images, docker_client
) -> None:
    images_dir = tmp_path / "images"
    shutil.copytree(REPO / "images" / "base", images_dir / "base")
    builder = ImageBuilder(Settings(images_dir=images_dir), docker_client)
    assert builder.ref("base").tag == images["base"]  # same context, same tag, nothing to build
    assert builder.exists(builder.ref("base"))

    (images_dir / "probe").mkdir()
    dockerfile = images_dir / "probe" / "Dockerfile"
    dockerfile.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo one > /probe\n")
    first = builder.ref("probe")
    assert not builder.exists(first)
    try:
        builder.build(["probe"], lambda message: None)
        assert builder.exists(first)
        logged: list[str] = []
        assert builder.ensure("probe", logged.append) == first  # current: nothing is built
        builder.build(["probe"], logged.append)
        assert logged == [
            f"base: up to date ({images['base']})",
            f"probe: up to date ({first.tag})",
        ]
        dockerfile.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo two > /probe\n")
        assert builder.ref("probe").tag != first.tag
    finally:
        docker_client.images.remove(first.tag, force=True)
        docker_client.images.remove(first.tag.split(":")[0] + ":latest", force=True)


def test_failed_build_names_the_image_and_the_failing_step(tmp_path, images, docker_client) -> None:
    images_dir = tmp_path / "images"
    shutil.copytree(REPO / "images" / "base", images_dir / "base")
    (images_dir / "broken").mkdir()
    (images_dir / "broken" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo preparing\nRUN echo about to fail && exit 3\n"
    )
    builder = ImageBuilder(Settings(images_dir=images_dir), docker_client)
    logged: list[str] = []
    with pytest.raises(ImageBuildError) as caught:
        builder.build(["broken"], logged.append)
    message = str(caught.value)
    assert "image 'broken' failed at Step 4/5 : RUN echo about to fail && exit 3" in message
    assert "about to fail" in message
    assert "returned a non-zero code: 3" in message
    assert any(line.startswith("broken: Step 3/5") for line in logged)  # progress streamed


def test_host_mirror_reads_deb822_and_one_line_sources(tmp_path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert host_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert host_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").unlink()
    assert host_mirror(tmp_path) is None
