"""planner.yamlio.write_atomic: replace atomically, keep permission bits, write through symlinks,
refuse non-regular targets, leave nothing behind on failure (issue 9 item 7)."""

from __future__ import annotations

import os
import stat

import pytest

from planner.errors import InputError
from planner.yamlio import write_atomic


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_existing_file_keeps_its_permission_bits(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_new_file_gets_the_umask_default_not_0600(tmp_path):
    path = tmp_path / "sub" / "plan.yaml"
    write_atomic(path, "x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "plans" / "v2.yaml"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o644)
    link = tmp_path / "prod.yaml"
    link.symlink_to(target)
    write_atomic(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["v2.yaml"]  # no temporary file left


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "prod.yaml"
    link.symlink_to("real.yaml")
    write_atomic(link, "new\n")
    assert link.is_symlink() and (tmp_path / "real.yaml").read_text() == "new\n"


@pytest.mark.parametrize("kind", ["fifo", "directory", "loop"])
def test_non_regular_targets_are_refused(tmp_path, kind):
    path = tmp_path / "out.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(path.name)
    with pytest.raises(InputError, match=str(path)):
        write_atomic(path, "x\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "bad \ud800 surrogate")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


def test_unwritable_places_are_input_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot write"):
        write_atomic(blocker / "plan.yaml", "x\n")  # a parent that is a file
