"""The SQLite store writes each job's row once per group commit (issue 17 item 8,
pool/store/store_sqlite_batch.c): of a job's puts in one commit only the last one's row
is written, its Idempotency-Key still with the job's first put. Bursts of keyed jobs
from several threads put many of a job's puts in one commit; after kill -9 and a
restart every job is as it ended, deleted jobs are gone, and every key replays its job
(also the keys of a burst cut short by the kill)."""

import sys
import threading
import time

import cloudpickle

from conftest import check_problem, decode_result, make_payload
from test_durability import hard_kill, reap_orphans, sqlite_server, wait_all

cloudpickle.register_pickle_by_value(sys.modules[__name__])

N = 300
THREADS = 6


def payload(i):
    return make_payload(lambda x: x + 1, i)


def post(s, i):
    return s.request("POST", "/v1/jobs", body=payload(i),
                     headers={"Content-Type": "application/json", "Idempotency-Key": f"burst-{i}"})


class Burst:
    """POSTs keyed jobs for the indices from several threads, unpaced, until done or the
    server stops answering: accepted {index: id} (the 201s)."""

    def __init__(self, s, indices):
        self.accepted, self.lock = {}, threading.Lock()
        indices = list(indices)
        self.threads = [threading.Thread(target=self._run, args=(s, indices[k::THREADS]))
                        for k in range(THREADS)]
        for th in self.threads:
            th.start()

    def _run(self, s, indices):
        for i in indices:
            try:
                r = post(s, i)
            except OSError:
                return
            if r.status != 201:
                return
            with self.lock:
                self.accepted[i] = r.json()["id"]

    def n_accepted(self):
        with self.lock:
            return len(self.accepted)

    def join(self):
        for th in self.threads:
            th.join(30)
        return dict(self.accepted)


def replays(s, i, jid):
    r = post(s, i)
    assert r.status == 200 and r.headers.get("Idempotent-Replayed") == "true", (i, r)
    assert r.json()["id"] == jid, (i, r.json()["id"], jid)


def test_bursts_kill_9_restart_final_rows_and_keys(tmp_path):
    db = tmp_path / "jobs.db"
    s = sqlite_server("coalesce-1", db, "--workers", "2")
    s2 = None
    try:
        first = Burst(s, range(N)).join()
        assert len(first) == N, f"only {len(first)} of {N} accepted"
        ended = wait_all(s, first.values(), timeout=60)
        gone = {i for i in first if i % 10 == 0}
        deletes = [threading.Thread(target=lambda i=i: s.request("DELETE", f"/v1/jobs/{first[i]}"))
                   for i in sorted(gone)]
        for th in deletes:
            th.start()
        for th in deletes:
            th.join(30)
        for i in sorted(gone):
            check_problem(s.request("GET", f"/v1/jobs/{first[i]}"), 404)

        # A second burst, killed mid-way: what got a 201 is on record with its key.
        second = Burst(s, range(N, 2 * N))
        deadline = time.monotonic() + 30
        while second.n_accepted() < N // 2:
            assert time.monotonic() < deadline, f"only {second.n_accepted()} accepted after 30 s"
            time.sleep(0.005)
        workers = hard_kill(s)
        cut = second.join()
        orphans = reap_orphans(workers)

        s2 = sqlite_server("coalesce-2", db, "--workers", "2")
        for i, jid in first.items():
            if i in gone:
                check_problem(s2.request("GET", f"/v1/jobs/{jid}"), 404)
                continue
            job = s2.get(jid)
            assert job == ended[jid], (i, job, ended[jid])
            assert decode_result(job) == i + 1
            replays(s2, i, jid)
        final = wait_all(s2, cut.values(), timeout=60)
        interrupted = []
        for i, jid in cut.items():
            replays(s2, i, jid)
            job = final[jid]
            if job["status"] == "failed" and job["error"]["type"] == "interrupted":
                interrupted.append(job)  # running at the kill: never run twice
            else:
                assert decode_result(job) == i + 1, job
        assert len(interrupted) <= 2, interrupted[:3]
        assert not orphans, f"workers {sorted(orphans)} outlived the kill -9"
        print(f"\n{N} jobs, {len(gone)} deleted; {len(cut)} accepted before the kill -9, "
              f"{len(interrupted)} interrupted")
    finally:
        if s.proc.poll() is None:
            s.kill()
        if s2 is not None:
            problems = s2.stop()
            assert not problems, problems
