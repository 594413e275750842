#!/usr/bin/env python3
"""The benchmark suite: the runner side by side with a minimal spawn loop (the limit)
and the tools people use today, in one run, interleaved, several rounds each.

    python3 benches/run.py             # the whole suite (a few minutes); writes docs/benchmarks.md
    python3 benches/run.py --smoke     # tiny sizes, one round, seconds; writes nothing
    python3 benches/run.py --smoke --debug   # the same on the debug build (CI: shares the tests' build)

Reports medians and ratios (higher is better for the runner). Peers that are not
installed are listed as missing, not failed.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
# Where the workloads that create many files make them (sources, changed, cache):
# target/ unless RUNNER_BENCH_DIR says otherwise. On a file system without a journal
# (this machine's root), creating a file after many deletions costs ten times what it
# does on a journaled one (ext4's recently_deleted(); docs/benchmarks.md), so the
# figures of record are also taken on a journaled ext4, as CI machines have.
BENCH_DIR = os.environ.get("RUNNER_BENCH_DIR") or os.path.join(ROOT, "target")
LIMIT = os.path.join(ROOT, "target", "release", "examples", "spawn_limit")
# `--before PATH`: an earlier runner binary, measured side by side in the output, cache
# and distributed workloads.
BEFORE = None
DEVNULL = subprocess.DEVNULL

POOL_SCRIPT = """
import subprocess, sys
from multiprocessing import Pool
mode, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = b"x" * 1024
def spawn(_):
    return subprocess.run(["true"]).returncode
def communicate(_):
    p = subprocess.run(["cat"], input=payload, capture_output=True)
    return 0 if p.stdout == payload else 1
if __name__ == "__main__":
    with Pool(k) as pool:
        codes = pool.map(spawn if mode == "spawn" else communicate, range(n), chunksize=1)
    sys.exit(max(codes))
"""


class Suite:
    def __init__(self, rounds, smoke, work):
        self.rounds = rounds
        self.smoke = smoke
        self.work = work
        self.results = []  # (workload, name, median seconds, extra dict)
        self.missing = []
        self.notes = []

    def sh(self, cmd, **kw):
        return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=DEVNULL, stderr=DEVNULL, cwd=self.work, **kw)

    def time(self, cmd):
        start = time.perf_counter()
        self.sh(cmd)
        return time.perf_counter() - start

    def compare(self, workload, contenders):
        """contenders: [(name, cmd)], run round-robin `rounds` times; returns {name: median}."""
        times = {name: [] for name, _ in contenders}
        for _ in range(self.rounds):
            for name, cmd in contenders:
                times[name].append(self.time(cmd))
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for name, _ in contenders:
            self.results.append((workload, name, medians[name], {"runs": [round(t, 3) for t in times[name]]}))
        return medians

    def jobfile(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def peak_kib(self, args):
        report = os.path.join(self.work, "report.json")
        self.sh([RUNNER, "run", *args, "--report", report])
        with open(report) as f:
            return json.load(f)["run"]["peak_rss_kib"]


def have(tool):
    return shutil.which(tool) is not None


def build(debug):
    profile = [] if debug else ["--release"]
    subprocess.run(["cargo", "build", *profile, "--quiet", "--bin", "runner", "--example", "spawn_limit"], cwd=ROOT, check=True)


def spawn_workload(s, n, pool, table):
    job = s.jobfile(f"spawn{pool}.toml", f'pool = {pool}\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    contenders = [
        ("limit", [LIMIT, "spawn", str(n), str(pool), "true"]),
        ("runner", [RUNNER, job]),
        ("runner --quiet", [RUNNER, "-q", job]),
        ("duct", [LIMIT, "duct-spawn", str(n), str(pool), "true"]),
        ("xargs -P", f"seq {n} | xargs -n 1 -P {pool} true"),
        ("python Pool", [sys.executable, "-c", POOL_SCRIPT, "spawn", str(n), str(pool)]),
    ]
    if have("parallel"):
        contenders.append(("GNU parallel", f"seq {n} | parallel --will-cite -j {pool} true"))
    if have("rust-parallel"):
        contenders.append(("rust-parallel", f"seq {n} | rust-parallel -j {pool} true"))
    medians = s.compare(f"spawn pool {pool}", contenders)
    limit = medians["limit"]
    for name, t in medians.items():
        table.append((f"spawn {n} × true, pool {pool}", name, t, n / t, limit / t))
    return medians


def dist_workload(s, n, table):
    """The dist profile (LTO, one codegen unit, symbols stripped: what `cargo install
    --profile dist` and the GitHub Action build) against the release profile: the spawn
    rate, side by side, and the binaries' sizes (release as built, with its line tables,
    and stripped, so that the ratio is of code, not of debug info)."""
    dist = os.environ.get("RUNNER_DIST_BIN")  # a dist binary built elsewhere (another target folder)
    if not dist:
        subprocess.run(["cargo", "build", "--profile", "dist", "--quiet", "--bin", "runner"], cwd=ROOT, check=True)
        dist = os.path.join(ROOT, "target", "dist", "runner")
    job = s.jobfile("spawn-dist.toml", f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    medians = s.compare("dist profile", [("release", [RUNNER, job]), ("dist", [dist, job])])
    for name, t in medians.items():
        table.append((f"spawn {n} × true, pool 2", f"runner ({name} profile)", t, n / t, medians["release"] / t))
    stripped = os.path.join(s.work, "runner-release-stripped")
    subprocess.run(["strip", "-o", stripped, RUNNER], check=True)
    sizes = {"release": os.path.getsize(RUNNER), "release, stripped": os.path.getsize(stripped), "dist": os.path.getsize(dist)}
    mib = {name: f"{size / 2**20:.2f} MiB" for name, size in sizes.items()}
    s.notes.append(
        f"binary size: release {mib['release']}, release stripped {mib['release, stripped']}, dist {mib['dist']}; "
        f"dist/release {sizes['dist'] / sizes['release']:.2f}, dist/release stripped {sizes['dist'] / sizes['release, stripped']:.2f}"
    )


def communicate_workload(s, n, pool, table):
    payload = "x" * 1024
    job = s.jobfile("comm.toml", f'pool = {pool}\n[jobs.t]\ncommand = ["cat"]\nstdin = "{payload}"\nitems = {{ range = [0, {n}] }}\n')
    medians = s.compare(
        "communicate",
        [
            ("limit", [LIMIT, "communicate", str(n), str(pool), "1024", "cat"]),
            ("runner", [RUNNER, job]),
            ("duct", [LIMIT, "duct-communicate", str(n), str(pool), "1024", "cat"]),
            ("python Pool", [sys.executable, "-c", POOL_SCRIPT, "communicate", str(n), str(pool)]),
        ],
    )
    for name, t in medians.items():
        table.append((f"communicate {n} × 1 KiB → cat, pool {pool}", name, t, n / t, medians["limit"] / t))


def stream_workload(s, lines, table, memory):
    files = {}
    for label, capacity in (("capacity 16", "[queues.q]\ncapacity = 16\n"), ("default capacity", "")):
        files[label] = s.jobfile(
            f"stream-{len(files)}.toml",
            f'{capacity}[jobs.p]\ncommand = ["seq", "{lines}"]\nto = "q"\n[jobs.c]\ncommand = ["wc", "-l"]\nstdin = {{ queue = "q" }}\n',
        )
    contenders = [("shell pipe", f"seq {lines} | wc -l")] + [(f"runner, {label}", [RUNNER, path]) for label, path in files.items()]
    medians = s.compare("queue stream", contenders)
    for name, t in medians.items():
        table.append((f"queue stream {lines:,} lines → wc -l", name, t, lines / t, medians["shell pipe"] / t))
    for label, path in files.items():
        memory.append((f"queue stream, {label}", s.peak_kib([path]), 50 * 1024))


def fanout_workload(s, n, table):
    queue = s.jobfile("fanout-q.toml", f'[jobs.p]\ncommand = ["seq", "{n}"]\nto = "q"\n[jobs.c]\ncommand = ["true"]\nitems = {{ queue = "q" }}\n')
    rng = s.jobfile("fanout-r.toml", f'[jobs.c]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    medians = s.compare("queue fan-out", [("range", [RUNNER, "-q", rng]), ("queue", [RUNNER, "-q", queue])])
    for name, t in medians.items():
        table.append((f"fan-out {n:,} × true (pool = CPUs)", name, t, n / t, medians["range"] / t))


def output_workload(s, size, memory):
    job = s.jobfile("flood.toml", f"[jobs.flood]\ncommand = 'yes 0123456789012345678901234567890123456789012345678 | head -c {size}'\n")
    memory.append((f"one task printing {size / 1e9:g} GB", s.peak_kib([job]), 64 * 1024))


def output_modes_workload(s, size, n, table, memory):
    """Output modes side by side: one task printing `size` bytes (MB/s), `n` tasks
    printing 100 lines each (tasks/s), and the cost of `--trace` on `n` × true."""
    line = "0123456789012345678901234567890123456789012345678"
    flood = s.jobfile("modes.toml", f"[jobs.flood]\ncommand = 'yes {line} | head -c {size}'\n")
    # The reference: the same bytes through one more pipe (`cat`), as the runner is.
    contenders = [("shell pipe", f"yes {line} | head -c {size} | cat > /dev/null")]
    runners = [("runner", RUNNER)] + ([("runner (before)", BEFORE)] if BEFORE else [])
    for name, binary in runners:
        contenders += [
            (f"{name} --output {mode}", [binary, "run", flood, "--output", mode]) for mode in ("lines", "grouped", "keep-order")
        ]
        contenders.append((f"{name} --no-label", [binary, "run", flood, "--no-label"]))
    medians = s.compare("output", contenders)
    work = f"one task printing {size / 1e6:g} MB"
    for name, _ in contenders:
        t = medians[name]
        # Ratio against the pipe: 1.00 is as fast as a shell pipe.
        table.append((work, name, t, size / 1e6 / t, medians["shell pipe"] / t))
    memory.append((f"one task printing {size / 1e6:g} MB, grouped", s.peak_kib([flood, "--output", "grouped"]), 64 * 1024))
    many = s.jobfile("many.toml", f"pool = 2\n[jobs.t]\ncommand = ['seq', '100']\nitems = {{ range = [0, {n}] }}\n")
    contenders = [(f"runner --output {mode}", [RUNNER, "run", many, "--output", mode]) for mode in ("lines", "grouped", "keep-order")]
    medians = s.compare("fan-out output", contenders)
    for name, _ in contenders:
        t = medians[name]
        table.append((f"{n:,} tasks × 100 lines, pool 2", name, t, n / t, medians["runner --output lines"] / t))
    spawn = s.jobfile("trace.toml", f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    trace = os.path.join(s.work, "trace.json")
    contenders = [("runner", [RUNNER, "run", spawn]), ("runner --trace", [RUNNER, "run", spawn, "--trace", trace])]
    medians = s.compare("trace", contenders)
    for name, _ in contenders:
        t = medians[name]
        table.append((f"spawn {n:,} × true, pool 2", name, t, n / t, medians["runner"] / t))


def secrets_workload(s, size, table):
    """Redaction's cost: one task printing `size` bytes with three secrets declared and
    given to it (every byte goes through the matcher) against none, side by side."""
    line = "0123456789012345678901234567890123456789012345678"
    plain = s.jobfile("plain.toml", f"[jobs.flood]\ncommand = 'yes {line} | head -c {size}'\n")
    secrets = s.jobfile(
        "secrets.toml",
        "[secrets]\n"
        'A = { command = "echo tok-aaaa-1111-bbbb" }\n'
        'B = { command = "echo ghp_0123456789abcdefghij" }\n'
        'C = { command = "echo hunter2-but-longer" }\n'
        f"[jobs.flood]\ncommand = 'yes {line} | head -c {size}'\nsecrets = ['A', 'B', 'C']\n",
    )
    contenders = [("runner, no secrets", [RUNNER, "run", plain]), ("runner, 3 secrets", [RUNNER, "run", secrets])]
    medians = s.compare("secrets", contenders)
    for name, _ in contenders:
        t = medians[name]
        table.append((f"one task printing {size / 1e6:g} MB", name, t, size / 1e6 / t, medians["runner, no secrets"] / t))


def scale_workload(s, jobs, items, table, memory):
    lines = []
    for j in range(jobs):
        needs = f"\nneeds = [\"j{j - 1}\"]" if j % 10 else ""
        lines.append(f'[jobs.j{j}]\ncommand = ["echo", "{{item}}", "{{job}}"]\nitems = [1, 2, 3]{needs}\n')
    big = s.jobfile("thousand.toml", "\n".join(lines))
    medians = s.compare("check 1000 jobs", [("runner check", [RUNNER, "check", big])])
    table.append((f"runner check, {jobs} jobs", "runner check", medians["runner check"], None, None))
    fan = s.jobfile("hundredk.toml", f'[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {items}] }}\n')
    memory.append((f"running {items:,} items", s.peak_kib(["-q", fan]), 200 * 1024))


def journal_workload(s, n, table):
    """Spawn n × true with the journal (the default) and without (a state folder that
    cannot be made): the journal's cost, as a ratio."""
    job = s.jobfile("journal.toml", f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    state = os.path.join(s.work, "journal-state")
    medians = s.compare(
        "journal",
        [
            ("runner, no journal", [RUNNER, "-q", job, "--state", "/dev/null/none"]),
            ("runner, journal", [RUNNER, "-q", job, "--state", state]),
        ],
    )
    base = medians["runner, no journal"]
    for name, t in medians.items():
        table.append((f"spawn {n} × true, pool 2, journal cost", name, t, n / t, base / t))


def resources_workload(s, n, table):
    """Spawn n × true, pool 2, with a resource that never binds (`uses` 1 of 1,000,000)
    and with none, side by side: the cost of the resource bookkeeping, as a ratio."""
    plain = s.jobfile("nores.toml", f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
    held = s.jobfile("res.toml", f'pool = 2\n[resources]\ndb = 1000000\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\nuses = {{ db = 1 }}\n')
    medians = s.compare(
        "resources",
        [
            ("runner, no resource", [RUNNER, "-q", plain]),
            ("runner, a resource that never binds", [RUNNER, "-q", held]),
        ],
    )
    base = medians["runner, no resource"]
    for name, t in medians.items():
        table.append((f"spawn {n} × true, pool 2, resource cost", name, t, n / t, base / t))


def rate_workload(s, rate, seconds, table):
    """`rate = "N/s"` over `seconds`: the starts the tasks' own records give (the JSON
    report's first and last start), against the rate asked. Ratio: achieved / asked."""
    n = rate * seconds + 1
    job = s.jobfile(f"rate{rate}.toml", f'pool = 8\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\nrate = "{rate}/s"\n')
    report = os.path.join(s.work, f"rate{rate}.json")
    achieved = []
    for _ in range(s.rounds):
        t0 = time.time()
        s.sh([RUNNER, "run", "-q", job, "--report", report])
        wall = time.time() - t0
        with open(report) as f:
            starts = sorted(
                datetime.datetime.fromisoformat(t["start"].replace("Z", "+00:00")).timestamp()
                for t in json.load(f)["tasks"]
            )
        span = starts[-1] - starts[0]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        achieved.append(((n - 1) / span, wall, min(gaps)))
    got, wall, gap = sorted(achieved)[len(achieved) // 2]
    s.results.append((f"rate {rate}/s", "runner", wall, {"achieved": round(got, 2), "min_gap_ms": round(gap * 1000, 3)}))
    table.append((f"rate {rate}/s over {seconds} s ({n} × true, pool 8)", "runner", wall, got, got / rate))


SERVICE_SERVER = """import http.server, sys, time
time.sleep(0.3)
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
with open("opened.t", "w") as f:
    f.write(repr(time.time()))
server.serve_forever()
"""


def services_workload(s, table):
    """Readiness latency of a service: a Python HTTP server opens its port 0.3 s after it
    starts and writes the time it did; the one job needing it writes its own start time
    (`date`). The latency is the second less the first, per readiness check (median of
    the rounds); the wall time is the whole run's."""
    server = s.jobfile("svc_server.py", SERVICE_SERVER)
    for kind in ("tcp", "http"):
        latencies, walls = [], []
        for _ in range(max(s.rounds, 5)):
            port = free_port()
            check = f'tcp = "127.0.0.1:{port}"' if kind == "tcp" else f'http = "http://127.0.0.1:{port}/"'
            job = s.jobfile(
                f"svc_{kind}.toml",
                f'[jobs.web]\nservice = true\ncommand = ["python3", "{server}", "{port}"]\nready = {{ {check} }}\n'
                f'[jobs.client]\nneeds = ["web"]\ncommand = "date +%s.%N > client.t"\n',
            )
            for name in ("opened.t", "client.t"):
                try:
                    os.remove(os.path.join(s.work, name))
                except FileNotFoundError:
                    pass
            t0 = time.time()
            s.sh([RUNNER, "run", "-q", job])
            walls.append(time.time() - t0)
            with open(os.path.join(s.work, "opened.t")) as f:
                opened = float(f.read())
            with open(os.path.join(s.work, "client.t")) as f:
                client = float(f.read())
            latencies.append(client - opened)
        latency = statistics.median(latencies)
        wall = statistics.median(walls)
        s.results.append((f"service {kind} readiness", "runner", wall, {"latency_ms": [round(l * 1000, 1) for l in latencies]}))
        table.append((f"service ready ({kind}): port open to first client start, median {latency * 1000:.0f} ms", "runner", wall, None, None))


def memory_by_items(s, sizes, memory):
    """Peak memory of runs of `true` over growing item counts (--quiet): flat, not
    growing with the number of tasks."""
    peaks = []
    for n in sizes:
        job = s.jobfile(f"items{n}.toml", f'[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
        kib = s.peak_kib(["-q", job, "--state", os.path.join(s.work, f"state{n}")])
        peaks.append((n, kib))
        memory.append((f"{n:,} items of true (--quiet, journaled)", kib, 64 * 1024))
    (n0, k0), (n1, k1) = peaks[0], peaks[-1]
    growth = (k1 - k0) * 1024 / (n1 - n0)
    memory.append((f"growth per item between {n0:,} and {n1:,}: {growth:.2f} bytes", k1, 64 * 1024))


def resume_workload(s, n, table):
    """A run of n items of which 90 % succeed, then --resume: the time from start to the
    first new task's start line."""
    job = s.jobfile(
        "resume.toml",
        f'[jobs.t]\ncommand = "test {{index}} -lt {n * 9 // 10} || test -e ok.flag"\nitems = {{ range = [0, {n}] }}\n',
    )
    flag = os.path.join(s.work, "ok.flag")
    if os.path.exists(flag):
        os.remove(flag)
    state = os.path.join(s.work, "resume-state")
    subprocess.run([RUNNER, "-q", job, "--state", state], cwd=s.work, stdout=DEVNULL, stderr=DEVNULL)
    open(flag, "w").close()
    started = time.perf_counter()
    proc = subprocess.Popen([RUNNER, job, "--state", state, "--resume"], cwd=s.work, stdout=DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    for line in proc.stderr:
        if first is None and "] start t:" in line:
            first = time.perf_counter() - started
    proc.wait()
    total = time.perf_counter() - started
    table.append((f"--resume of {n:,} items, 90 % done: to the first new task", "runner --resume", first or total, None, None))
    table.append((f"--resume of {n:,} items, 90 % done: the whole resumed run", "runner --resume", total, n / 10 / total, None))


def sources_workload(s, n, table):
    """`runner plan` on a job whose sources match n unchanged files of 10 KiB (100 MB at
    10,000): warm (the stat cache: nothing read) and cold (every file touched, so every
    stat differs from the stamp's and every file is read and hashed), with the hashing rate next to b3sum
    and sha256sum on the same files. The files are in the page cache in every case: cold
    means the runner's cache, not the disk's. Made in target/, not /tmp: creating many
    files in this machine's /tmp costs twenty times as much."""
    base = tempfile.mkdtemp(prefix="bench-sources-", dir=BENCH_DIR)
    try:
        paths = []
        for i in range(n):
            folder = os.path.join(base, "data", f"{i // 100:03}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{i:05}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(10 * 1024))
            paths.append(path)
        megabytes = n * 10 * 1024 / 1e6
        job = os.path.join(base, "sources.toml")
        with open(job, "w") as f:
            f.write('[jobs.t]\ncommand = ["true"]\nsources = ["data/**"]\n')
        state = os.path.join(base, "state")
        # The stamp trusts a file's stat only once its mtime and ctime are 2 s old: the
        # files settle first. Warm: nothing changed since. Cold: every file touched (a
        # new mtime and ctime), so every stat differs from the stamp's and every file is
        # read (a plan writes no stamp, so each cold plan hashes them all again).
        old = time.time() - 3600
        for p in paths:
            os.utime(p, (old, old))
        time.sleep(2.5)
        subprocess.run([RUNNER, "-q", job, "--state", state], check=True, stdout=DEVNULL, stderr=DEVNULL)
        plan = [RUNNER, "plan", job, "--state", state]
        listing = subprocess.run(plan, check=True, capture_output=True, text=True).stdout
        assert "up to date" in listing, listing
        hashers = [name for name in ("b3sum", "sha256sum") if have(name)]
        s.missing.extend(name for name in ("b3sum",) if not have(name))
        times = {name: [] for name in ["runner plan, warm", "runner plan, cold", *hashers]}
        for _ in range(s.rounds):
            times["runner plan, warm"].append(s.time(plan))
        for p in paths:
            os.utime(p, (old + 60, old + 60))
        for _ in range(s.rounds):
            times["runner plan, cold"].append(s.time(plan))
            for name in hashers:
                times[name].append(s.time(f"find {base}/data -type f -print0 | xargs -0 {name} > /dev/null"))
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for name, ts in times.items():
            s.results.append(("sources", name, medians[name], {"runs": [round(t, 3) for t in ts]}))
        reference = medians.get("b3sum") or medians.get("sha256sum")
        what = f"plan, sources = {n:,} unchanged files ({megabytes:.0f} MB); rate in MB/s"
        table.append((what, "runner plan, warm (stat cache)", medians["runner plan, warm"], None, None))
        cold = medians["runner plan, cold"]
        table.append((what, "runner plan, cold (all hashed)", cold, megabytes / cold, reference / cold if reference else None))
        for name in hashers:
            table.append((what, name, medians[name], megabytes / medians[name], None))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def changed_workload(s, n, table):
    """`runner plan --json --changed-since main` in a git repository where n files
    changed (half committed on the branch, half unstaged) and a job of n tasks, each
    reading one file of its own, and n more whose files did not change: git asked, 2n
    tasks decided (target: under 1 s at 10,000). Each task's source is a plain path: a
    glob (`src/*/{item}.txt`) makes the up-to-date look of each task that runs walk the
    folder, which costs the same without --changed-since (2.9 s for 2,000 such tasks
    here). Made in target/ (see sources_workload)."""
    base = tempfile.mkdtemp(prefix="bench-changed-", dir=BENCH_DIR)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@runner.invalid", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    try:
        os.makedirs(os.path.join(base, "src"))
        for i in range(2 * n):
            with open(os.path.join(base, "src", f"{i}.txt"), "w") as f:
                f.write(f"{i}\n")
        job = os.path.join(base, "changed.toml")
        with open(job, "w") as f:
            f.write(f'[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {2 * n}] }}\nsources = ["src/{{item}}.txt"]\n')
        def run_git(*args):
            subprocess.run(git + list(args), cwd=base, env=env, check=True, stdout=DEVNULL, stderr=DEVNULL)
        run_git("init", "-q")
        run_git("add", "-A")
        run_git("commit", "-q", "-m", "base")
        run_git("checkout", "-q", "-b", "feature")
        for i in range(n):
            with open(os.path.join(base, "src", f"{i}.txt"), "a") as f:
                f.write("changed\n")
            if i == n // 2:
                run_git("commit", "-q", "-am", "half")
        plan = [RUNNER, "plan", job, "--json", "--changed-since", "main", "--state", os.path.join(base, "state")]
        listing = subprocess.run(plan, check=True, capture_output=True, text=True, env=env).stdout
        actions = [t["action"] for t in json.loads(listing)]
        assert actions.count("unchanged") == n, actions.count("unchanged")
        times = [s.time(plan) for _ in range(s.rounds)]
        median = statistics.median(times)
        s.results.append(("changed", "runner plan --changed-since", median, {"runs": [round(t, 3) for t in times]}))
        table.append((f"plan --changed-since: {n:,} changed files, {2 * n:,} tasks", "runner plan --changed-since", median, 2 * n / median, None))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, proc=None, what="server"):
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if (proc is not None and proc.poll() is not None) or time.time() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)


def distributed_workload(s, n, table):
    """2,000 no-op tasks through 2 workers (pool 1 each, --no-local) against the local
    run at pool 2; and the same with workers reaching Redis through a proxy that delays
    each direction by 1 ms and 10 ms (benches/delay_proxy.py), against the run without
    delay. Each configuration has a Redis database of its own, so that its workers serve
    only its runs; all run round-robin in one process, side by side (and with --before,
    the earlier binary's workers and coordinator too)."""
    if not have("redis-server"):
        s.missing.append("redis-server (distributed workload)")
        return
    port = free_port()
    data = tempfile.mkdtemp(prefix="runner-bench-redis-")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", data], stdout=DEVNULL)
    workers, proxies = [], []
    try:
        deadline = time.time() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout.strip() != b"PONG":
            if time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        job = s.jobfile("dist.toml", f'pool = 2\n[jobs.t]\ncommand = ["true"]\nitems = {{ range = [0, {n}] }}\n')
        proxy = os.path.join(ROOT, "benches", "delay_proxy.py")
        configs = [("Redis, 2 workers × 1", RUNNER, 0)]
        if BEFORE:
            configs.append(("Redis, 2 workers × 1 (before)", BEFORE, 0))
        for ms in (1, 10):
            configs.append((f"Redis +{ms} ms each way", RUNNER, ms))
            if BEFORE:
                configs.append((f"Redis +{ms} ms each way (before)", BEFORE, ms))
        contenders = [("local, pool 2", [RUNNER, "-q", job])]
        for db, (name, binary, ms) in enumerate(configs, start=1):
            url = f"redis://127.0.0.1:{port}/{db}"
            worker_url = url
            if ms:
                listen = free_port()
                proxies.append(subprocess.Popen([sys.executable, proxy, str(listen), str(port), str(ms)], stdout=DEVNULL, stderr=DEVNULL))
                wait_port(listen, proxies[-1], "delay proxy")
                worker_url = f"redis://127.0.0.1:{listen}/{db}"
            # --quiet, as the local run and the coordinator (-q): otherwise each worker
            # writes every task's start and end line, a cost the local run does not pay.
            workers += [subprocess.Popen([binary, "worker", job, "--broker", worker_url, "--pool", "1", "--quiet"], stdout=DEVNULL, stderr=DEVNULL) for _ in range(2)]
            contenders.append((name, [binary, "-q", job, "--broker", url, "--no-local"]))
        time.sleep(0.5)
        medians = s.compare("distributed", contenders)
        for name, t in medians.items():
            if "ms each way" in name:
                base = "Redis, 2 workers × 1" + (" (before)" if name.endswith("(before)") else "")
                table.append((f"{n:,} × true over Redis (ratio: to no delay)", name, t, n / t, medians[base] / t))
            else:
                table.append((f"{n:,} × true over Redis (ratio: to local)", name, t, n / t, medians["local, pool 2"] / t))
    finally:
        for p in workers + proxies:
            p.terminate()
            p.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(data, ignore_errors=True)


class Nginx:
    """An nginx of the suite's own serving Bazel's HTTP cache protocol (WebDAV PUT, the
    server block of docs/cache.md without its password), on a free loopback port; its
    config, logs and files in `base`. One process, as the user that started it."""

    def __init__(self, base):
        self.base = base
        self.port = free_port()
        for d in ("root", "logs", "tmp"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        conf = os.path.join(base, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"""daemon off;
master_process off;
pid {base}/nginx.pid;
error_log {base}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {base}/root;
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 1100m;
        }}
    }}
}}
"""
            )
        self.proc = subprocess.Popen(["nginx", "-p", base, "-e", f"{base}/logs/error.log", "-c", conf], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("nginx did not start: " + open(f"{base}/logs/error.log").read())
                time.sleep(0.05)

    def url(self, prefix):
        return f"http://127.0.0.1:{self.port}/{prefix}/"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def timed_rounds(s, workload, contenders):
    """Like Suite.compare, with an untimed setup before each timed command:
    contenders are (name, setup, cmd); `setup(round)` returns the folder to run in.
    Returns {name: median}."""
    times = {name: [] for name, _, _ in contenders}
    for r in range(s.rounds):
        for name, setup, cmd in contenders:
            cwd = setup(r)
            start = time.perf_counter()
            subprocess.run(cmd(r) if callable(cmd) else cmd, check=True, stdout=DEVNULL, stderr=DEVNULL, cwd=cwd)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, _, _ in contenders:
        s.results.append((workload, name, medians[name], {"runs": [round(t, 3) for t in times[name]]}))
    return medians


def cache_runner_line(cwd, args):
    """Runs the runner once (untimed) and returns its `cache: …` line."""
    out = subprocess.run([RUNNER, "run", *args], cwd=cwd, check=True, stdout=DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    return next((l for l in out.splitlines() if l.startswith("cache: ")), "(no cache line)")


def has_cache():
    """Whether this runner has `--cache` (the suite also runs on older binaries)."""
    help_text = subprocess.run([RUNNER, "run", "--help"], capture_output=True, text=True).stdout
    return "--cache" in help_text


def cache_workload(s, n, table):
    """The results cache on n tasks each writing one 10 KiB output (a copy of its own
    source): the first run without a cache, and with an empty cache (every task a miss,
    then stored: the cost of a cache, folder and HTTP against nginx); a fully cached run
    in a fresh copy (every task restored: the restore rate), an up-to-date run, and
    `cp -r` of the same outputs. Fresh copies are hard links of a template (sources
    only), made before each timed run. Made in target/ (see sources_workload)."""
    if not has_cache():
        s.missing.append("--cache (a runner without the results cache)")
        return
    base = tempfile.mkdtemp(prefix="bench-cache-", dir=BENCH_DIR)
    nginx = None
    try:
        template = os.path.join(base, "template")
        os.makedirs(os.path.join(template, "src"))
        os.makedirs(os.path.join(template, "out"))
        for i in range(n):
            with open(os.path.join(template, "src", f"{i}.bin"), "wb") as f:
                f.write(os.urandom(10 * 1024))
        with open(os.path.join(template, "jobs.toml"), "w") as f:
            f.write(
                "pool = 2\n[jobs.t]\n"
                f"items = {{ range = [0, {n}] }}\n"
                'command = ["cp", "src/{item}.bin", "out/{item}.bin"]\n'
                'sources = ["src/{item}.bin"]\noutputs = ["out/{item}.bin"]\n'
            )
        copies = [0]

        def fresh(_round):
            copies[0] += 1
            path = os.path.join(base, f"copy{copies[0]}")
            subprocess.run(["cp", "-al", template, path], check=True)
            return path

        store = lambda r: os.path.join(base, f"store{r}")
        filled = {}  # round -> the copy that filled its store

        def filling(r):
            filled[r] = fresh(r)
            return filled[r]

        run = [RUNNER, "run", "-q", "jobs.toml"]
        contenders = [
            ("runner, no cache", fresh, run),
            ("runner --cache DIR (empty: all stored)", filling, lambda r: run + ["--cache", store(r)]),
        ]
        if BEFORE:
            # The earlier binary beside this one, each against its own run without a cache.
            before = [BEFORE] + run[1:]
            contenders += [
                ("runner (before), no cache", fresh, before),
                ("runner (before) --cache DIR (empty: all stored)", fresh, lambda r: before + ["--cache", store(r) + "-before"]),
            ]
        if have("nginx"):
            nginx = Nginx(os.path.join(base, "nginx"))
            contenders.append(("runner --cache http:// nginx (empty: all stored)", fresh, lambda r: run + ["--cache", nginx.url(f"r{r}")]))
            if BEFORE:
                contenders.append(("runner (before) --cache http:// nginx (empty: all stored)", fresh, lambda r: before + ["--cache", nginx.url(f"b{r}")]))
        else:
            s.missing.append("nginx (HTTP cache workload)")
        contenders += [
            ("runner --cache DIR, fresh copy (all restored)", fresh, lambda r: run + ["--cache", store(r)]),
            ("runner, up to date (no cache)", lambda r: filled[r], run),
            ("cp -r of the outputs", lambda r: filled[r], lambda r: ["cp", "-r", "out", f"../cp{r}"]),
        ]
        if nginx:
            # After the run that filled it (each round's contenders run in this order).
            at = [c[0] for c in contenders].index("runner --cache DIR, fresh copy (all restored)")
            contenders.insert(at, ("runner --cache http:// nginx, fresh copy (all restored)", fresh, lambda r: run + ["--cache", nginx.url(f"r{r}")]))
        medians = timed_rounds(s, "cache", contenders)
        # Each restored copy holds every output, byte for byte: checked once.
        check = fresh(0)
        line = cache_runner_line(check, ["jobs.toml", "-q", "--cache", store(0)])
        assert line.startswith(f"cache: {n} restored"), line
        for i in (0, n - 1):
            with open(os.path.join(check, "out", f"{i}.bin"), "rb") as a, open(os.path.join(template, "src", f"{i}.bin"), "rb") as b:
                assert a.read() == b.read(), i
        miss = f"{n:,} tasks × 10 KiB output, every task a miss: cost of a cache (ratio: no cache over cache, target ≥ 0.91)"
        for name in [c[0] for c in contenders if "empty" in c[0] or c[0].endswith(", no cache")]:
            t = medians[name]
            baseline = "runner (before), no cache" if "(before)" in name else "runner, no cache"
            table.append((miss, name, t, n / t, medians[baseline] / t))
        hit = f"{n:,} tasks × 10 KiB output, restored (rate in tasks/s; ratio: cp -r over it)"
        for name in [c[0] for c in contenders if "restored" in c[0] or "up to date" in c[0] or c[0].startswith("cp")]:
            t = medians[name]
            table.append((hit, name, t, n / t, medians["cp -r of the outputs"] / t))
        first = medians["runner --cache DIR (empty: all stored)"]
        restored = medians["runner --cache DIR, fresh copy (all restored)"]
        s.notes.append(f"cache: a fully cached run took {restored / first:.2f} of the first run's time ({first / restored:.1f}× faster)")
    finally:
        if nginx:
            nginx.stop()
        shutil.rmtree(base, ignore_errors=True)


def cache_big_workload(s, size, table, memory):
    """One task copying a `size`-byte source to its output: stored into a folder cache
    and restored from it in a fresh copy, against `cp` of the file, with the runner's
    peak memory for both (target: under 64 MiB at 1 GB). Store throughput is the size
    over the time the cache adds to the first run."""
    if not has_cache():
        return
    base = tempfile.mkdtemp(prefix="bench-cache-big-", dir=BENCH_DIR)
    try:
        template = os.path.join(base, "template")
        os.makedirs(os.path.join(template, "src"))
        os.makedirs(os.path.join(template, "out"))
        with open(os.path.join(template, "src", "big.bin"), "wb") as f:
            chunk = os.urandom(1 << 20)
            left = size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        with open(os.path.join(template, "jobs.toml"), "w") as f:
            f.write('[jobs.big]\ncommand = ["cp", "src/big.bin", "out/big.bin"]\nsources = ["src/big.bin"]\noutputs = ["out/big.bin"]\n')
        copies = [0]
        current = {}

        def fresh(_round):
            copies[0] += 1
            path = os.path.join(base, f"copy{copies[0]}")
            subprocess.run(["cp", "-al", template, path], check=True)
            # Copies of earlier rounds go: only a few GB of disk are used at once.
            old = os.path.join(base, f"copy{copies[0] - 3}")
            shutil.rmtree(old, ignore_errors=True)
            current["copy"] = path
            return path

        store = lambda r: os.path.join(base, f"store{r}")

        def reset_store(r):
            shutil.rmtree(store(r if r >= 0 else 0), ignore_errors=True)
            return fresh(r)

        run = [RUNNER, "run", "-q", "jobs.toml"]
        contenders = [
            ("cp of the file", fresh, ["cp", "src/big.bin", "out/copy.bin"]),
            ("runner, no cache", fresh, run),
            ("runner --cache DIR (stored)", reset_store, lambda r: run + ["--cache", store(r)]),
            ("runner --cache DIR, fresh copy (restored)", fresh, lambda r: run + ["--cache", store(r)]),
        ]
        medians = timed_rounds(s, "cache-big", contenders)
        mb = size / 1e6
        what = f"one {mb:,.0f} MB output through a folder cache (MB/s; ratio: cp over it)"
        for name, _, _ in contenders:
            t = medians[name]
            table.append((what, name, t, mb / t, medians["cp of the file"] / t))
        added = medians["runner --cache DIR (stored)"] - medians["runner, no cache"]
        if added > 0:
            s.notes.append(f"cache: storing {mb:,.0f} MB added {added:.2f} s to the run ({mb / added:,.0f} MB/s)")
        # Peak memory, from the runner's own report.
        check = fresh(0)
        shutil.rmtree(store(99), ignore_errors=True)
        report = os.path.join(base, "report.json")
        subprocess.run(run + ["--cache", store(99), "--report", report], cwd=check, check=True, stdout=DEVNULL, stderr=DEVNULL)
        with open(report) as f:
            memory.append((f"one {mb:,.0f} MB output stored in a folder cache", json.load(f)["run"]["peak_rss_kib"], 64 * 1024))
        check = fresh(0)
        subprocess.run(run + ["--cache", store(99), "--report", report], cwd=check, check=True, stdout=DEVNULL, stderr=DEVNULL)
        with open(report) as f:
            memory.append((f"one {mb:,.0f} MB output restored from a folder cache", json.load(f)["run"]["peak_rss_kib"], 64 * 1024))
        assert subprocess.run(["cmp", "-s", os.path.join(check, "out", "big.bin"), os.path.join(template, "src", "big.bin")]).returncode == 0, "restored byte for byte"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def svg_chart(rows):
    """Horizontal bars of tasks per second for the spawn workloads."""
    rows = [r for r in rows if r[0].startswith("spawn") and r[3]]
    if not rows:
        return ""
    width, bar_h, left = 760, 18, 230
    top = 40
    height = top + len(rows) * (bar_h + 6) + 30
    best = max(r[3] for r in rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">Tasks per second, {rows[0][0].split(",")[0]} (higher is better)</text>',
    ]
    y = top
    for workload, name, _, rate, _ in rows:
        w = (width - left - 80) * rate / best
        color = "#2b6cb0" if name.startswith("runner") else ("#718096" if name == "limit" else "#a0aec0")
        label = f"{name} ({workload.split(', ')[-1]})"
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{rate:,.0f}/s</text>')
        y += bar_h + 6
    out.append("</svg>")
    return "\n".join(out) + "\n"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round, write nothing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--debug", action="store_true", help="use the debug build (with --smoke: only that it still works)")
    ap.add_argument("--only", help="run only these workloads (comma-separated: journal,resources,memory,resume,sources,changed,output,secrets,cache,dist,services,profile); prints, writes nothing; dist is the distributed one, profile builds the dist profile")
    ap.add_argument("--before", help="an earlier runner binary to measure side by side with this one (output, cache and distributed workloads)")
    args = ap.parse_args()
    global BEFORE
    BEFORE = os.path.abspath(args.before) if args.before else None
    if args.debug and not args.smoke:
        ap.error("--debug measures nothing worth writing down; use it with --smoke")
    if args.debug:
        global RUNNER, LIMIT
        RUNNER = os.path.join(ROOT, "target", "debug", "runner")
        LIMIT = os.path.join(ROOT, "target", "debug", "examples", "spawn_limit")
    build(args.debug)
    rounds = 1 if args.smoke else args.rounds
    size = (
        dict(spawn=100, comm=50, lines=100_000, fan=200, gb=10_000_000, jobs=1000, items=1000, dist=50, mem=[100, 1000], resume=200, sources=200, out=1_000_000, cache=50, cache_big=10_000_000)
        if args.smoke
        else dict(spawn=5000, comm=2000, lines=5_000_000, fan=20_000, gb=1_000_000_000, jobs=1000, items=100_000, dist=2000, mem=[100_000, 1_000_000], resume=100_000, sources=10_000, out=200_000_000, cache=1000, cache_big=1_000_000_000)
    )
    work = tempfile.mkdtemp(prefix="runner-bench-")
    s = Suite(rounds, args.smoke, work)
    for tool in ("parallel", "rust-parallel"):
        if not have(tool):
            s.missing.append(tool)
    table, memory = [], []
    started = time.time()
    try:
        if args.only:
            only = args.only.split(",")
            if "journal" in only:
                journal_workload(s, size["spawn"], table)
            if "resources" in only:
                resources_workload(s, size["spawn"], table)
                for rate in (100, 1000):
                    rate_workload(s, rate, 1 if args.smoke else 10, table)
            if "memory" in only:
                memory_by_items(s, size["mem"], memory)
            if "resume" in only:
                resume_workload(s, size["resume"], table)
            if "sources" in only:
                sources_workload(s, size["sources"], table)
            if "changed" in only:
                changed_workload(s, size["sources"], table)
            if "output" in only:
                output_modes_workload(s, size["out"], size["spawn"], table, memory)
            if "secrets" in only:
                secrets_workload(s, size["out"], table)
            if "services" in only:
                services_workload(s, table)
            if "dist" in only:
                distributed_workload(s, size["dist"], table)
            if "cache" in only:
                cache_workload(s, size["cache"], table)
                cache_big_workload(s, size["cache_big"], table, memory)
            if "profile" in only:
                dist_workload(s, size["spawn"], table)
            args.smoke = True
            raise StopIteration
        for pool in (2, 8):
            spawn_workload(s, size["spawn"], pool, table)
        memory.append((f"{size['spawn']} tasks (spawn, pool 2)", s.peak_kib(["-q", os.path.join(work, "spawn2.toml")]), 32 * 1024))
        communicate_workload(s, size["comm"], 2, table)
        stream_workload(s, size["lines"], table, memory)
        fanout_workload(s, size["fan"], table)
        output_workload(s, size["gb"], memory)
        scale_workload(s, size["jobs"], size["items"], table, memory)
        distributed_workload(s, size["dist"], table)
        journal_workload(s, size["spawn"], table)
        resources_workload(s, size["spawn"], table)
        for rate in (100, 1000):
            rate_workload(s, rate, 1 if args.smoke else 10, table)
        memory_by_items(s, size["mem"], memory)
        resume_workload(s, size["resume"], table)
        sources_workload(s, size["sources"], table)
        changed_workload(s, size["sources"], table)
        output_modes_workload(s, size["out"], size["spawn"], table, memory)
        secrets_workload(s, size["out"], table)
        cache_workload(s, size["cache"], table)
        cache_big_workload(s, size["cache_big"], table, memory)
        services_workload(s, table)
    except StopIteration:
        pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - started

    lines = ["| workload | tool | median | tasks (or lines, or MB)/s | ratio |", "|---|---|---:|---:|---:|"]
    for workload, name, t, rate, ratio in table:
        rate_s = f"{rate:,.0f}" if rate else "–"
        ratio_s = f"{ratio:.2f}" if ratio else "–"
        name_s = f"**{name}**" if name.startswith("runner") or name.startswith("queue") or name.startswith("Redis") else name
        lines.append(f"| {workload} | {name_s} | {t:.3f} s | {rate_s} | {ratio_s} |")
    mem_lines = ["| run | runner's peak memory | target |", "|---|---:|---:|"]
    for label, kib, target in memory:
        ok = "met" if kib < target else "MISSED"
        mem_lines.append(f"| {label} | {kib / 1024:.1f} MiB | < {target // 1024} MiB ({ok}) |")
    text = "\n".join(lines) + "\n\n" + "\n".join(mem_lines) + "\n"
    if s.missing:
        text += "\nMissing (not measured): " + ", ".join(s.missing) + "\n"
    if s.notes:
        text += "\n" + "\n".join(f"- {note}" for note in s.notes) + "\n"
    print(text)
    print(f"suite took {elapsed:.0f} s")
    if args.smoke:
        return
    chart = svg_chart(table)
    with open(os.path.join(ROOT, "docs", "benchmarks-spawn.svg"), "w") as f:
        f.write(chart)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro_path = os.path.join(ROOT, "benches", "notes.md")
    notes = open(intro_path).read() if os.path.exists(intro_path) else ""
    with open(args.out, "w") as f:
        f.write(
            "# Benchmarks\n\n"
            f"Latest run: {stamp}, on {machine()}; {rounds} rounds, interleaved, medians; the suite took {elapsed:.0f} s.\n"
            "Command: `python3 benches/run.py` (it builds the release binary first).\n"
            "Ratios: the runner's rate over the reference's (the limit, the shell pipe, the `range`\n"
            "run, or the local run), so 1.00 is as fast as the reference and higher is better.\n\n"
            "![tasks per second](benchmarks-spawn.svg)\n\n" + text + "\n" + notes
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
