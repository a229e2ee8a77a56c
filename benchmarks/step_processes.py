"""Train steps in separate processes, interleaved: what a process-wide setting (the cores a
process may use, glibc's malloc tunables, $XLA_FLAGS) does to either framework's step.

    python benchmarks/step_processes.py --preset=cores     # 2 cores against 1, both frameworks
    python benchmarks/step_processes.py --preset=malloc    # glibc malloc kept, on huge pages
    python benchmarks/step_processes.py --shape=synthetic --rounds=8 \\
        --variant="torch=torch" --variant="jax_wide=jax XLA_FLAGS=--xla_cpu_prefer_vector_width=512"
    python benchmarks/step_processes.py --dtype=float32 \\
        --variant="new=jax" --variant="old=jax AVKD_BENCH_REPO=/tmp/old_checkout"

A variant is `NAME=FRAMEWORK[@CPUS] [VAR=VALUE ...]`: `FRAMEWORK` is `jax` (our compiled
step, with the configs' `xla_flags` as `avkd_jax.main` adds them) or `torch`
(`teachers/torch_avc.py`, `torch.set_num_threads` = the process's cores); `CPUS` is a
`taskset` list; the assignments are the process's extra environment ($AVKD_BENCH_REPO: the
checkout whose `avkd_jax` and `benchmarks/train_step.py` the worker runs, for comparing
two commits in one run). Each variant is
its own worker process (these settings are read when a process starts); after every
worker has compiled and taken two warm-up steps, a round asks each for one step in turn,
so the shared VM's drift falls on all alike. Reported per variant: median seconds per
step and samples/s, the median over rounds of its speed relative to the first variant
(with the range), and the worker's CPU seconds per step (user, system).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# glibc's allocator (malloc(3), mallopt(3), tunables): one arena, never mmap, never trim,
# so XLA's and torch's per-step buffers are reused instead of mapped and faulted in
# afresh each step; on madvise'd transparent huge pages.
MALLOC_KEPT = (
    "MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1000000000000 "
    "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"
)
PRESETS = {
    "cores": ["torch=torch", "torch_1core=torch@{first}", "jax=jax", "jax_1core=jax@{first}"],
    "malloc": [
        "torch=torch",
        f"torch_malloc=torch {MALLOC_KEPT}",
        "jax=jax",
        f"jax_malloc=jax {MALLOC_KEPT}",
    ],
}


def worker(framework: str, shape: str, dtype: str | None) -> None:
    """Builds one step, prints READY, then takes a step per line of stdin and prints
    `wall user system` seconds."""
    repo = os.path.abspath(os.environ.get("AVKD_BENCH_REPO", REPO))
    sys.path.insert(0, repo)
    if framework == "jax":
        from avkd_jax import default_config, runtime

        runtime.add_xla_flags(default_config.base_config().xla_flags)
    sys.path.insert(0, os.path.join(repo, "benchmarks"))
    import train_step  # That checkout's: the steps, shapes and configs of the table.

    config = train_step.load_config(*train_step.SHAPES[shape])
    if dtype:
        config.model.dtype = dtype
    batch = train_step.random_batch(config)
    if framework == "jax":
        step = train_step.jax_step(config, batch)[0]
    else:
        train_step.torch.set_num_threads(len(os.sched_getaffinity(0)))
        step = train_step.torch_step(config, batch, autocast=False)
    step()
    step()
    print("READY", flush=True)
    for _ in sys.stdin:
        start, cpu = time.perf_counter(), os.times()
        step()
        wall, end = time.perf_counter() - start, os.times()
        print(wall, end.user - cpu.user, end.system - cpu.system, flush=True)


def parse_variant(spec: str) -> tuple[str, str, str | None, dict]:
    head, *assignments = shlex.split(spec)
    name, _, target = head.partition("=")
    framework, _, cpus = target.partition("@")
    if not name or framework not in ("jax", "torch"):
        raise SystemExit(f"--variant {spec!r}: expected NAME=jax|torch[@CPUS] [VAR=VALUE ...]")
    env = {}
    for assignment in assignments:
        var, eq, value = assignment.partition("=")
        if not eq:
            raise SystemExit(f"--variant {spec!r}: {assignment!r} is not VAR=VALUE")
        env[var] = value
    return name, framework, cpus or None, env


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="paper16", help="paper16, paper32 or synthetic")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument(
        "--variant", action="append", default=[], help="NAME=FRAMEWORK[@CPUS] [VAR=VALUE ...]"
    )
    p.add_argument("--dtype", help="the JAX workers' model.dtype (default: the config's)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.shape, args.dtype)
    # A one-core variant takes the first core this process may use.
    preset = [
        spec.format(first=min(os.sched_getaffinity(0))) for spec in PRESETS.get(args.preset, [])
    ]
    if not preset + args.variant:
        p.error("give --preset or --variant")
    variants = [parse_variant(spec) for spec in preset + args.variant]
    workers = []
    try:
        for name, framework, cpus, env in variants:
            command = [
                sys.executable,
                os.path.abspath(__file__),
                f"--worker={framework}",
                f"--shape={args.shape}",
                *([f"--dtype={args.dtype}"] if args.dtype else []),
            ]
            if cpus:
                command = ["taskset", "-c", cpus, *command]
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, **env},
            )
            workers.append((name, proc))
            # One compiles at a time, so that no compile overlaps another's warm-up.
            while (line := proc.stdout.readline()) != "READY\n":
                if not line:
                    raise SystemExit(f"variant {name}: the worker exited before its first step")
        times = {name: [] for name, _ in workers}
        for _ in range(args.rounds):
            for name, proc in workers:
                proc.stdin.write("step\n")
                proc.stdin.flush()
                times[name].append([float(x) for x in proc.stdout.readline().split()])
    finally:
        for _, proc in workers:
            proc.stdin.close()
            proc.wait()

    sys.path.insert(0, HERE)
    import train_step

    batch_size = train_step.load_config(*train_step.SHAPES[args.shape]).batch_size
    base = [t[0] for t in times[variants[0][0]]]
    print(
        f"| variant | framework | cores | environment | s/step | samples/s | speed vs {variants[0][0]} [range] | CPU s/step user, sys |"
    )
    print("|---" * 8 + "|")
    for name, framework, cpus, env in variants:
        wall = [t[0] for t in times[name]]
        ratios = [b / w for b, w in zip(base, wall)]
        median = statistics.median(wall)
        print(
            f"| {name} | {framework} | {cpus or 'all'} | {' '.join(f'{k}={v}' for k, v in env.items()) or '–'} "
            f"| {median:.3f} | {batch_size / median:.2f} | {statistics.median(ratios):.3f} "
            f"[{min(ratios):.3f}, {max(ratios):.3f}] | {statistics.median(t[1] for t in times[name]):.2f}, "
            f"{statistics.median(t[2] for t in times[name]):.2f} |"
        )
    print(
        f"\n{args.shape}, batch {batch_size}, {args.rounds} interleaved rounds after 2 warm-up "
        f"steps each; {train_step.cpu_name()}, {len(os.sched_getaffinity(0))} cores."
    )


if __name__ == "__main__":
    main()
