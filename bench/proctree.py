"""The controller memory of a benchmarked command: the summed RSS and PSS of its process tree, sampled.

    sampler = TreeSampler(proc.pid); sampler.start(); ...; sampler.done.set(); sampler.join()
    sampler.peak_pss, sampler.peak_rss, sampler.peak_procs      # KiB, KiB, processes
"""

import os
import threading


def tree(root):
    """The pids of ``root`` and all its descendants, from the kernel's per-thread lists of children
    (/proc/PID/task/TID/children): a few reads for the measured tree, not one per process on the machine."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue  # gone meanwhile
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except OSError:
                pass
    return pids


def kib(path, key):
    """The number (KiB) on the line of a /proc file that starts with ``key``; 0 once the process is gone."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree at 10 Hz; keeps the peaks (KiB)."""

    def __init__(self, root_pid):
        super().__init__(daemon=True)
        self.root = root_pid
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            pids = tree(self.root)
            rss = sum(kib("/proc/%d/status" % p, b"VmRSS:") for p in pids)
            pss = sum(kib("/proc/%d/smaps_rollup" % p, b"Pss:") for p in pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.done.wait(0.1)
