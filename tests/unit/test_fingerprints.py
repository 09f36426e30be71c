"""lib/store/fingerprints.py: content hashes of files and folders; what counts as a readable image file."""

from __future__ import annotations

import os
from pathlib import Path

from lib.store.fingerprints import EMPTY_SHA256, image_file_digest, image_file_state, tree_digest


def test_tree_digest_follows_content_not_time(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"one")
    first = tree_digest(tmp_path)
    os.utime(tmp_path / "a", (1, 1))
    assert tree_digest(tmp_path) == first  # touched, same bytes
    (tmp_path / "a").write_bytes(b"two")
    assert tree_digest(tmp_path) != first


def test_special_entries_are_unreadable_images_never_opened(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(b"x")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "pipe.png")
    assert image_file_state(tmp_path / "ok.png") is not None
    assert image_file_state(tmp_path / "dangling.png") is None and image_file_state(tmp_path / "pipe.png") is None
    assert image_file_digest(tmp_path / "pipe.png") == EMPTY_SHA256  # hashing a FIFO would wait forever
    assert len(tree_digest(tmp_path)) == 64
