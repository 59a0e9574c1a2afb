"""Snakemake's pending re-evaluation timers are cancelled when a run ends (bobench/scheduler_timers.py)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import yaml

from bobench.scheduler_timers import cancel_pending_timers

ROOT = Path(__file__).resolve().parents[1]


def test_a_pending_timer_is_cancelled_and_its_thread_ends():
    fired = threading.Event()
    timer = threading.Timer(600, fired.set)
    timer.start()
    assert cancel_pending_timers() >= 1
    timer.join(timeout=10)
    assert not timer.is_alive() and not fired.is_set()


def test_a_long_rate_limiter_timespan_comes_with_the_handlers_that_cancel_its_timers():
    """Without the handlers, a run with the profiles' 10-minute timespan would return up to 10 minutes after
    its last job."""
    for profile in ("default", "slurm"):
        settings = yaml.safe_load((ROOT / "profiles" / profile / "profile.yaml").read_text())
        assert settings["max-jobs-per-timespan"] == "1000/10m", profile
    snakefile = (ROOT / "Snakefile").read_text()
    for handler in ("onsuccess", "onerror"):
        assert re.search(rf"^{handler}:\n    cancel_pending_timers\(\)$", snakefile, re.MULTILINE), handler
