"""Listing a folder's media loses nothing: broken and looping symlinks, unreadable folders and files get a cause."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

from dflab.errors import MediaError
from dflab.media import probe, read_image, sniff
from dflab.media.files import media_files

SUFFIXES = {".jpg", ".png", ".mp4"}


@pytest.fixture()
def tree(tmp_path, astronaut) -> Path:
    """good.jpg, notes.txt, loop/a.mp4 ⇄ loop/b.mp4, loop/dangling.jpg, loop/up → .., linked → another folder."""
    root = tmp_path / "in"
    (root / "loop").mkdir(parents=True)
    cv2.imwrite(str(root / "good.jpg"), astronaut[..., ::-1])
    (root / "notes.txt").write_text("not media")
    os.symlink("b.mp4", root / "loop" / "a.mp4")
    os.symlink("a.mp4", root / "loop" / "b.mp4")
    os.symlink("nowhere.jpg", root / "loop" / "dangling.jpg")
    os.symlink("..", root / "loop" / "up")  # a folder loop: walked once
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "elsewhere.png"), astronaut[..., ::-1])
    os.symlink(other, root / "linked")
    return root


def test_symlink_loops_broken_links_and_linked_folders_are_listed(tree):
    names = [p.relative_to(tree).as_posix() for p in media_files(tree, SUFFIXES)]
    # Path.rglob listed only good.jpg: the loop, the dangling link and the linked folder's photo were lost
    assert names == ["good.jpg", "linked/elsewhere.png", "loop/a.mp4", "loop/b.mp4", "loop/dangling.jpg"]


def test_a_link_to_a_parent_folder_is_not_climbed(tree):
    # loop/up → .. : scanning loop/ must not scan the folder above it through the link
    assert [p.name for p in media_files(tree / "loop", SUFFIXES)] == ["a.mp4", "b.mp4", "dangling.jpg"]


def test_broken_and_looping_links_say_why_they_are_missing(tree):
    for name, detail in [("loop/a.mp4", "symbolic link loop"), ("loop/dangling.jpg", "broken symbolic link")]:
        for read in (sniff, probe, read_image):
            with pytest.raises(MediaError) as info:
                read(tree / name)
            assert info.value.cause == "missing" and detail in info.value.detail, (name, read, info.value)


def test_an_unreadable_folder_is_listed_itself(tree, deny_read):
    deny_read(tree / "loop")
    names = [p.relative_to(tree).as_posix() for p in media_files(tree, SUFFIXES)]
    assert names == ["good.jpg", "linked/elsewhere.png", "loop"]
    with pytest.raises(MediaError) as info:
        sniff(tree / "loop")
    assert info.value.cause == "unreadable"


@pytest.mark.parametrize("name", ["good.jpg", "clip.mp4"])
def test_an_unreadable_file_is_unreadable_not_a_decode_error(tree, deny_read, name):
    path = tree / name
    if name == "clip.mp4":
        path.write_bytes((tree / "good.jpg").read_bytes())  # any content: it is never read
    deny_read(path)
    readers = (sniff, probe, read_image) if name.endswith(".jpg") else (sniff, probe)
    for read in readers:
        with pytest.raises(MediaError) as info:
            read(path)
        assert info.value.cause == "unreadable" and "Permission denied" in info.value.detail, (read, info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_chmod_000_file_is_unreadable(tree):
    path = tree / "good.jpg"
    path.chmod(0)
    try:
        with pytest.raises(MediaError) as info:
            sniff(path)
        assert info.value.cause == "unreadable"
    finally:
        path.chmod(0o644)
