"""The HTTP cache's cost on a run that misses everything, split by what it does: 1,000
tasks (`cp` of a 10 KiB source to its output, pool 2) with no cache, and with an
nginx store (benches/run.py's `Nginx`) in each `--cache-mode` (read-write: lookups and
stores; read: lookups only; write: stores only), interleaved, 5 rounds; prints the
median wall time, its ratio to no cache, and the CPU time of the runner with its tasks
(`getrusage` of the children) and of nginx (`/proc/PID/stat`).

With `--pin`, nginx runs on CPU 1 alone and every run (the one without a cache too) on
CPU 0: what the runner pays when its cache server is another machine, as it is in CI
(on this 2-CPU machine, nginx's own CPU time is otherwise taken from the runner's).

    python3 benches/cache_http_cost.py [--pin] [RUNNER]   (default: target/release/runner)
"""
import sys, os, subprocess, time, tempfile, shutil, statistics
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as B, resource  # noqa: E401
def ngcpu(pid):
    f=open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK')

args = sys.argv[1:]
pin = "--pin" in args
args = [a for a in args if a != "--pin"]
R = args[0] if args else os.path.join(ROOT, "target/release/runner")
if pin and os.cpu_count() < 2:
    sys.exit("--pin needs 2 CPUs")
n = 1000
base = tempfile.mkdtemp(prefix="exp-", dir=B.BENCH_DIR)
t = os.path.join(base, "template"); os.makedirs(t + "/src"); os.makedirs(t + "/out")
for i in range(n):
    open(f"{t}/src/{i}.bin", "wb").write(os.urandom(10240))
open(f"{t}/jobs.toml", "w").write(f'pool = 2\n[jobs.t]\nitems = {{ range = [0, {n}] }}\ncommand = ["cp", "src/{{item}}.bin", "out/{{item}}.bin"]\nsources = ["src/{{item}}.bin"]\noutputs = ["out/{{item}}.bin"]\n')
ng = B.Nginx(base + "/nginx")
if pin:
    os.sched_setaffinity(ng.proc.pid, {1})
on_cpu0 = (lambda: os.sched_setaffinity(0, {0})) if pin else None
c = [0]
def fresh():
    c[0] += 1; p = f"{base}/c{c[0]}"; subprocess.run(["cp", "-al", t, p], check=True); return p
res = {}; cpu = {}
modes = [("none", []), ("rw", ["--cache-mode", "read-write"]), ("read", ["--cache-mode", "read"]), ("write", ["--cache-mode", "write"])]
for rnd in range(5):
    for name, extra in modes:
        cwd = fresh()
        args = [R, "run", "-q", "jobs.toml"] + ([] if name == "none" else ["--cache", ng.url(f"r{rnd}{name}")] + extra)
        r0=resource.getrusage(resource.RUSAGE_CHILDREN); n0=ngcpu(ng.proc.pid)
        s = time.perf_counter(); subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=on_cpu0); res.setdefault(name, []).append(time.perf_counter() - s)
        r1=resource.getrusage(resource.RUSAGE_CHILDREN); n1=ngcpu(ng.proc.pid)
        cpu.setdefault(name, []).append(((r1.ru_utime+r1.ru_stime)-(r0.ru_utime+r0.ru_stime), n1-n0))
for name, _ in modes:
    m = statistics.median(res[name]); print(f"{name:6} {m:.3f}s ratio {statistics.median(res['none'])/m:.2f}", [round(x, 3) for x in res[name]])
for name, _ in modes:
    rc = statistics.median(c[0] for c in cpu[name]); nc = statistics.median(c[1] for c in cpu[name])
    print(f"{name:6} cpu runner+tasks {rc:.3f}s nginx {nc:.3f}s")
ng.stop(); shutil.rmtree(base)
