"""Let the Snakemake process exit as soon as its run is over.

``profiles/default`` sets the job rate limiter's timespan to 10 minutes, because Snakemake (9.27 and back to
8.17) arms a ``threading.Timer`` of that timespan at the end of every pass of its scheduling loop, and every
finished job starts one more such chain of timers: at the default 1 s timespan the loop ran hundreds of
times a second by the middle of the covering rehearsal. Those timers are not daemon threads, so Python waits
for every pending one before the process exits: up to 10 minutes after the last job. The Snakefile's
``onsuccess`` and ``onerror`` handlers, which run when no job is left to schedule, cancel them.

Only the Snakefile imports this module, so that no job's code inputs (rules/common.smk ``code``) include it.
"""

from __future__ import annotations

import threading


def cancel_pending_timers() -> int:
    """Cancel every pending ``threading.Timer`` of this process (a cancelled timer's thread ends at once);
    return how many there were."""
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)
