"""``store/journal/forked_writer.py``: the child runs its work only once told to, gives up
when the parent closes the pipe without the go byte, and reports a failing work by its exit
status; its writes land, and the parent's objects it saw are those of the fork's instant."""

from __future__ import annotations

from pathlib import Path

from warren.store.journal import forked_writer


def test_the_child_writes_what_the_parent_held_at_the_fork_once_told_to(tmp_path: Path):
    held = {"value": "at the fork"}
    target = tmp_path / "out"
    pid, go = forked_writer.start(lambda: target.write_text(held["value"]))
    held["value"] = "changed after the fork"   # the child's copy does not see this
    assert not target.exists()   # it waits for the go
    forked_writer.go(go, True)
    assert forked_writer.wait(pid) == forked_writer.DONE
    assert target.read_text() == "at the fork"


def test_a_child_told_to_give_up_runs_nothing(tmp_path: Path):
    target = tmp_path / "out"
    pid, go = forked_writer.start(lambda: target.write_text("x"))
    forked_writer.go(go, False)
    assert forked_writer.wait(pid) == forked_writer.GAVE_UP
    assert not target.exists()


def test_a_failing_work_is_the_childs_exit_status():
    def fail() -> None:
        raise OSError("disk full")

    pid, go = forked_writer.start(fail)
    forked_writer.go(go, True)
    assert forked_writer.wait(pid) == forked_writer.FAILED
