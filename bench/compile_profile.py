"""Where Numba's compile time goes: run a refnet command from a cold cache and list every compilation.

    python -m bench.compile_profile [--cache DIR] [--json FILE] [-- REFNET ARGS...]

REFNET ARGS default to a tiny demo (one epoch, 40 training images per class). The command runs in a
fresh process with NUMBA_CACHE_DIR pointed at DIR (a new empty folder unless given: a cold cache;
give the same DIR twice for a warm run), and numba's "numba:compile" event (fired only when a
function is compiled, not when it is loaded from the cache) is timed per function and signature.
A function compiled while another one compiles (a callee typed inside its caller) is counted in
its own line, and its time is taken out of its caller's ("self" time), so the lines add up to the
total. Each compilation is timed twice: wall-clock, and the CPU time of the compiling thread
(`time.thread_time`; numba compiles on one thread), which a machine shared with other work
inflates much less. The process's CPU time (user + system, all threads) is printed beside them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_COMMAND = ["demo", "--epochs", "1", "--train-per-class", "40", "--val-per-class", "4", "--quiet"]

# Runs inside the profiled process: record every compile event, run the command, dump the record.
_CHILD = r"""
import atexit, json, os, resource, sys, time
from numba.core import event

records, stack = [], []

class CompileListener(event.Listener):
    def on_start(self, ev):
        stack.append([time.perf_counter(), 0.0, time.thread_time(), 0.0])

    def on_end(self, ev):
        start, children, cpu_start, cpu_children = stack.pop()
        total, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
        if stack:
            stack[-1][1] += total
            stack[-1][3] += cpu
        d = ev.data["dispatcher"]
        py = d.py_func
        records.append({"function": f"{py.__module__}.{py.__qualname__}",
                        "signature": ", ".join(str(a) for a in ev.data["args"]),
                        "total_s": total, "self_s": total - children, "self_cpu_s": cpu - cpu_children,
                        "nested": bool(stack)})

event.register("numba:compile", CompileListener())

def dump():
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["REFNET_COMPILE_PROFILE"], "w") as f:
        json.dump({"compiles": records, "process_cpu_s": ru_self.ru_utime + ru_self.ru_stime}, f)

atexit.register(dump)
from refnet.cli import main
status = main(sys.argv[1:])
sys.exit(status)
"""


def profile(refnet_args, cache_dir, timeout_s=3600):
    """Run `refnet ARGS` in a fresh process with NUMBA_CACHE_DIR=cache_dir; return its compile record."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="refnet-compile-") as tmp:
        record_path = os.path.join(tmp, "record.json")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, REFNET_COMPILE_PROFILE=record_path)
        env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
        t0, cpu0 = time.perf_counter(), os.times()
        proc = subprocess.run([sys.executable, "-c", _CHILD, *refnet_args], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"refnet {' '.join(refnet_args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(record_path, encoding="utf-8") as f:
            result = json.load(f)
    cpu1 = os.times()
    cpu = cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
    result.update(command=["refnet", *refnet_args], process_wall_s=wall, children_cpu_s=cpu)
    return result


def by_function(compiles):
    """{function: [specialisations, self wall seconds, self CPU seconds]}, most CPU first."""
    table = {}
    for c in compiles:
        row = table.setdefault(c["function"], [0, 0.0, 0.0])
        row[0] += 1
        row[1] += c["self_s"]
        row[2] += c["self_cpu_s"]
    return dict(sorted(table.items(), key=lambda kv: -kv[1][2]))


def format_profile(result):
    compiles = result["compiles"]
    wall = sum(c["self_s"] for c in compiles)
    cpu = sum(c["self_cpu_s"] for c in compiles)
    lines = [f"$ {' '.join(result['command'])}",
             f"{len(compiles)} compilations of {len(by_function(compiles))} functions: {cpu:.1f} s of CPU compiling "
             f"({wall:.1f} s wall-clock); the process: {result['process_wall_s']:.1f} s wall-clock, "
             f"{result['children_cpu_s']:.1f} s CPU (user + system, all threads)",
             f"{'CPU s':>8} {'wall s':>8} {'specs':>5}  function"]  # fmt: skip
    for name, (count, seconds, cpu_seconds) in by_function(compiles).items():
        lines.append(f"{cpu_seconds:8.2f} {seconds:8.2f} {count:5d}  {name}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compile_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="NUMBA_CACHE_DIR for the run (default: a new empty folder, a cold cache)")
    parser.add_argument("--json", help="also write the whole record (every compilation with its signature) here")
    parser.add_argument("--signatures", action="store_true", help="list every compiled signature")
    parser.add_argument("refnet_args", nargs="*", help="the refnet command to profile (after --)")
    args = parser.parse_args(argv)
    refnet_args = args.refnet_args or DEFAULT_COMMAND
    with tempfile.TemporaryDirectory(prefix="refnet-numba-cache-") as fresh:
        result = profile(refnet_args, args.cache or fresh)
    print(format_profile(result))
    if args.signatures:
        for c in sorted(result["compiles"], key=lambda c: (c["function"], c["signature"])):
            print(f"{c['self_cpu_s']:8.2f}  {c['function']}({c['signature']})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
