"""`memrec eval --jobs`: methods that share a warm-up stay in one process; the rest balance."""

from cli.eval_cmds import _strip_options, partition_methods
from evaluation.methods import METHODS


def test_shared_warmup_methods_stay_together_and_every_method_runs_once() -> None:
    groups = partition_methods(list(METHODS), 2)
    assert len(groups) == 2
    flat = [m for g in groups for m in g]
    assert sorted(flat) == sorted(METHODS)
    shared = {"naive-collab", "memrec", "memrec-no-read"}
    assert any(shared <= set(g) for g in groups)


def test_one_job_keeps_everything_in_one_group() -> None:
    assert partition_methods(["memrec", "als"], 1) == [["memrec", "als"]]


def test_child_command_line_drops_method_and_jobs() -> None:
    argv = ["eval", "--dataset", "ml-100k", "--method", "all", "--jobs=2", "--out", "r"]
    kept = _strip_options(argv, ("--method", "--jobs"))
    assert kept == ["eval", "--dataset", "ml-100k", "--out", "r"]
