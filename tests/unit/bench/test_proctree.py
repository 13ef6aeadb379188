"""bench/proctree.py: the benchmark's controller-memory sampler finds the whole process tree, and only it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import proctree  # noqa: E402  (bench/, put on the path above)

# A parent that starts a child, which starts a grandchild; each prints its pid and sleeps until stdin closes.
TREE = r"""
import subprocess, sys
depth = int(sys.argv[1])
print(__import__("os").getpid(), flush=True)
if depth:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(depth - 1), sys.argv[2]], stdin=subprocess.PIPE)
sys.stdin.read()
"""


@pytest.fixture
def three_generations():
    proc = subprocess.Popen([sys.executable, "-c", TREE, "2", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    pids = [int(proc.stdout.readline()) for _generation in range(3)]
    yield proc, pids
    proc.kill()
    proc.wait()
    for pid in pids[1:]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_tree_is_the_process_and_every_descendant(three_generations):
    proc, pids = three_generations
    assert pids[0] == proc.pid
    assert sorted(proctree.tree(proc.pid)) == sorted(pids)
    assert sorted(proctree.tree(pids[1])) == sorted(pids[1:])  # a subtree: not its parent
    assert os.getpid() not in proctree.tree(proc.pid)


def test_tree_of_a_process_that_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert proctree.tree(proc.pid) == [proc.pid]


def test_sampler_sums_the_tree(three_generations):
    proc, pids = three_generations
    sampler = proctree.TreeSampler(proc.pid)
    sampler.start()
    time.sleep(0.3)
    sampler.done.set()
    sampler.join()
    assert sampler.peak_procs == 3
    one = proctree.kib("/proc/%d/status" % pids[2], b"VmRSS:")
    assert one > 0
    assert sampler.peak_rss >= 2 * one  # three interpreters, not one
    assert 0 < sampler.peak_pss <= sampler.peak_rss


def test_kib_of_a_missing_file_or_key():
    assert proctree.kib("/proc/0/status", b"VmRSS:") == 0
    assert proctree.kib("/proc/self/status", b"NoSuchKey:") == 0
