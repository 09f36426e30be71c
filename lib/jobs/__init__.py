"""Background jobs: long work (extracting, training, auditing, mapping, benchmarking) runs as its own process, not in a
browser tab's script thread, so it survives a closed tab, a page change and a restart of the Streamlit server.

A job is one CLI command (``python -m lib train ... --json``): what the app runs, a user could type. Jobs live as
files under the cache (``jobs/<id>/``, through the layout, written atomically): the record of what was asked and its
state, the progress its process writes, the outcome it writes when it ends, and its log. One runner process per cache
(holding a lock) starts queued jobs in order, at most ``TLX_JOBS`` at a time (default 1: one heavy job, right for a
small machine), and delivers cancels. The runner and its jobs run in sessions of their own: killing the server
(even with SIGKILL) kills neither. Anyone who reads the registry settles it: a job whose process is gone without an
outcome (kill -9, out of memory, a reboot) is shown as failed with that reason, never as running forever; asking for
the same work again resumes from its checkpoints (extraction chunks, fine-tuning epochs).

    job, joined = submit(layout, JobSpec("train", ["train", "--source", ...], "train mobilenet @128"))
    jobs = list_jobs(layout)          # settled, newest first
    cancel_job(layout, job.id)
"""

from lib.jobs.queue import JobSpec, cancel_job, get_job, list_jobs, settle, submit
from lib.jobs.records import STATES, Job, Progress

__all__ = ["STATES", "Job", "JobSpec", "Progress", "cancel_job", "get_job", "list_jobs", "settle", "submit"]
