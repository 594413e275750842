#!/usr/bin/env python3
"""What a distributed run asks of Redis, per task: N no-op tasks through 2 workers
(pool 1 each, --no-local), the workers and the coordinator each reaching Redis through
a counting delay_proxy.py of their own (DELAY_MS each way for the workers, none for the
coordinator), and Redis's own INFO commandstats before and after (which also counts the
calls scripts make). Prints, per task: the request bursts (about the round trips) and
the commands of the workers and of the coordinator, by name, and Redis's calls by name.

    dist_trips.py [--runner BIN] [--tasks N] [--delay MS]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVNULL = subprocess.DEVNULL


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port):
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"nothing listens on {port}")
            time.sleep(0.05)


def commandstats(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True, text=True, check=True).stdout
    stats = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            stats[name] = int(fields["calls"])
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", default=os.path.join(ROOT, "target", "release", "runner"))
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--delay", type=float, default=0)
    args = ap.parse_args()
    n = args.tasks
    work = tempfile.mkdtemp(prefix="runner-trips-")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", work], stdout=DEVNULL)
    procs = []
    proxy = os.path.join(ROOT, "benches", "delay_proxy.py")
    try:
        wait_port(port)
        job = os.path.join(work, "trips.toml")
        with open(job, "w") as f:
            f.write(f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
        ports = {}
        for side, delay in (("workers", args.delay), ("coordinator", 0)):
            listen = free_port()
            procs.append(subprocess.Popen([sys.executable, proxy, str(listen), str(port), str(delay), "--stats", os.path.join(work, side + ".json")]))
            wait_port(listen)
            ports[side] = listen
        workers = [
            subprocess.Popen([args.runner, "worker", job, "--broker", f"redis://127.0.0.1:{ports['workers']}", "--pool", "1", "--quiet"], stdout=DEVNULL, stderr=DEVNULL)
            for _ in range(2)
        ]
        time.sleep(1)
        before = commandstats(port)
        started = time.perf_counter()
        subprocess.run([args.runner, "-q", job, "--broker", f"redis://127.0.0.1:{ports['coordinator']}", "--no-local"], check=True, stdout=DEVNULL)
        took = time.perf_counter() - started
        after = commandstats(port)
        for w in workers:
            w.terminate()
            w.wait()
        for p in procs:
            p.terminate()
            p.wait()
        procs = []
        print(f"{n} tasks in {took:.2f} s ({n / took:.0f}/s), workers +{args.delay} ms each way")
        for side in ("workers", "coordinator"):
            with open(os.path.join(work, side + ".json")) as f:
                s = json.load(f)
            # The workers' count runs from their start to their end: idle polling before
            # and after the run is in it (about a second each way).
            print(f"{side}: {s['bursts'] / n:.2f} bursts/task, {sum(s['commands'].values()) / n:.2f} commands/task, "
                  f"{s['bytes_up'] / n:.0f} B up and {s['bytes_down'] / n:.0f} B down per task, {s['connections']} connections")
            for name, count in sorted(s["commands"].items(), key=lambda kv: -kv[1]):
                print(f"    {name:<12} {count:>8}  {count / n:.3f}/task")
        print("Redis calls (scripts' own calls included), during the run:")
        for name in sorted(after, key=lambda k: -(after[k] - before.get(k, 0))):
            d = after[name] - before.get(name, 0)
            if d:
                print(f"    {name:<20} {d:>8}  {d / n:.3f}/task")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
