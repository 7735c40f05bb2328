"""The command line and the order of the runs.

One local stack (Apache Kafka broker, or Tansu where no Java is found; registry double, Events
API sandbox) serves the whole run. The
baselines share one pre-loaded input (forms + status changes on two 4-partition topics); every
e2e and latency run gets its own topics, app id and a reset sandbox. Repeats are interleaved
(raw, no-op, naive, e2e, latency; then again) so that drift of the machine spreads evenly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import data, e2e, faust_baseline, raw_loop, report, scale
from benchmarks import profile as pyspy
from benchmarks.common import BenchError, Contention, new_names, progress
from streams.local.stack import LocalStack
from streams.serde.avro import unframe

MEASUREMENTS = ("raw", "noop", "naive", "e2e", "latency", "memory", "scale", "own")
BUSY_PCT = 15.0
"""Other processes' CPU (percent of one core) above which a measurement is flagged."""
PARTITIONS = 4
OWN_LEADS_MAX = 10_000  # measurement 8's leads at most


@dataclass(frozen=True)
class Config:
    """Sizes and settings of one harness run."""

    mode: str
    size: int
    leads: int
    repeat: int
    only: tuple[str, ...]
    latency_rate: float
    latency_seconds: float
    latency_linger: float
    latency_warmup: float
    e2e_linger: float
    memory_leads: int
    worker_env: tuple[tuple[str, str], ...]
    profile: bool
    quiet_wait: float
    out: Path

    def wants(self, name: str) -> bool:
        """Whether measurement ``name`` was selected."""
        return name in self.only


@dataclass
class Collected:
    """Per-run figures, details and failures gathered while the harness runs."""

    runs: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    contention: list[dict[str, Any]] = field(default_factory=list)
    quiet_wait: float = 0.0

    def add(self, key: str, value: float) -> None:
        """Record one run's figure for the table."""
        self.runs.setdefault(key, []).append(value)

    def detail(self, key: str, value: dict[str, Any]) -> None:
        """Record one run's details for the JSON."""
        self.details.setdefault(key, []).append(value)

    def attempt(self, name: str, call: Callable[[], None]) -> None:
        """Run one measurement; a failure is recorded (the run goes on) and fails the exit code.

        The CPU that other processes on the machine used meanwhile is recorded too: above
        :data:`BUSY_PCT` % of a core the figures are not clean, and a warning says so.
        """
        if self.quiet_wait > 0:
            wait_quiet(self.quiet_wait)
        meter = Contention()
        meter.start()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - reported below and in the exit code
            progress(f"  FAILED {name}: {exc}")
            self.failures.append(
                {"measurement": name, "error": str(exc), "traceback": traceback.format_exc()}
            )
        other = meter.stop()
        self.contention.append({"measurement": name, "other_cpu_pct": round(other, 1)})
        if other > BUSY_PCT:
            progress(
                f"  warning: other processes used {other:.0f} % of a core during {name}; "
                "its figures are not clean"
            )


def wait_quiet(limit: float, window: float = 2.0) -> None:
    """Wait up to ``limit`` s for other processes to use under ``BUSY_PCT`` % of a core."""
    deadline = time.monotonic() + limit
    said = False
    while True:
        meter = Contention()
        meter.start()
        time.sleep(window)
        other = meter.stop()
        if other <= BUSY_PCT:
            return
        if time.monotonic() > deadline:
            progress(f"  the machine is still busy ({other:.0f} % of a core); measuring anyway")
            return
        if not said:
            progress(f"  waiting for a quiet machine (other processes use {other:.0f} % of a core)")
            said = True


def parse_args(argv: list[str] | None) -> Config:
    """Parse the command line into a :class:`Config`."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Leadstream benchmarks against the real local broker and the Events API "
        "sandbox; prints a table and writes bench-results/bench.json.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (< 3 minutes)")
    parser.add_argument(
        "--size",
        type=int,
        help="records per baseline run (default 200,000; smoke 10,000); "
        "the e2e leads default to a quarter of it",
    )
    parser.add_argument("--leads", type=int, help="leads per e2e run (default --size / 4)")
    parser.add_argument("--repeat", type=int, help="runs per measurement (default 3; smoke 1)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help=f"measurements to run, of {', '.join(MEASUREMENTS)} (default: all)",
    )
    parser.add_argument("--latency-rate", type=float, default=1000.0, help="events/s (1000)")
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of paced producing (10; smoke 3)"
    )
    parser.add_argument(
        "--latency-linger",
        type=float,
        default=0.0,
        help="LEADSTREAM_DELIVERY_LINGER of the latency run (0: no window, send what is there)",
    )
    parser.add_argument(
        "--latency-warmup",
        type=float,
        default=1.0,
        help="seconds of status changes at the latency rate, delivered before the measured "
        "ones and reported apart as the cold start (1; 0: none)",
    )
    parser.add_argument(
        "--e2e-linger",
        type=float,
        default=1.0,
        help="LEADSTREAM_DELIVERY_LINGER of the saturation runs (1, the product default)",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="LEADSTREAM_NAME=VALUE",
        help="a setting for every Leadstream worker of the run (e2e, latency, scale), e.g. "
        "LEADSTREAM_KAFKA_FETCH_MAX_WAIT=1.5 to measure a lever, or PYTHONPATH=<checkout> to "
        "measure another checkout's worker; repeatable",
    )
    parser.add_argument(
        "--memory-leads",
        type=int,
        help="leads in the state memory measurement (1,000,000; smoke 20,000, extrapolated)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add one saturation run recorded with py-spy (needs: pip install py-spy)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait, before each measurement, for other processes to go quiet "
        "(default 60; smoke 0)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    args = parser.parse_args(argv)
    only: list[str] = []
    for item in args.only or [",".join(MEASUREMENTS)]:
        only += [name.strip() for name in item.split(",") if name.strip()]
    worker_env = []
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not (name.startswith("LEADSTREAM_") or name == "PYTHONPATH"):
            parser.error(
                f"--worker-env wants LEADSTREAM_NAME=VALUE or PYTHONPATH=DIR, not {item!r}"
            )
        worker_env.append((name, value))
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; use {', '.join(MEASUREMENTS)}")
    smoke = args.smoke
    size = args.size or (10_000 if smoke else 200_000)
    for name in ("size", "leads", "repeat", "memory_leads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("latency_linger", "latency_warmup", "e2e_linger"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    return Config(
        mode="smoke" if smoke else "full",
        size=max(2, size),
        leads=args.leads or max(1, size // 4),
        repeat=args.repeat or (1 if smoke else 3),
        only=tuple(dict.fromkeys(only)),
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds or (3.0 if smoke else 10.0),
        latency_linger=args.latency_linger,
        latency_warmup=args.latency_warmup,
        e2e_linger=args.e2e_linger,
        memory_leads=args.memory_leads or (20_000 if smoke else 1_000_000),
        worker_env=tuple(worker_env),
        profile=args.profile,
        quiet_wait=args.quiet_wait if args.quiet_wait is not None else (0.0 if smoke else 60.0),
        out=args.out,
    )


@dataclass
class BaselineInput:
    """The shared input of the baselines: topics, record count and writer schemas by id."""

    topics: list[str]
    records: int
    writers: dict[int, Any]
    prefix: str


def prepare_baselines(stack: LocalStack, encoder: data.Encoder, cfg: Config) -> BaselineInput:
    """Encode and produce the baselines' input once: size/2 forms + size/2 status changes."""
    names = new_names("base")
    leads = cfg.size // 2
    data.create_topics(stack.broker.bootstrap, [names.form, names.status], PARTITIONS)
    started = time.perf_counter()
    forms, statuses = data.backlog(encoder, names, leads, data.now_utc())
    encoded_s = time.perf_counter() - started
    ids = {
        unframe(forms[0][1])[0]: "FormSubmitted",
        unframe(statuses[0][1])[0]: "LeadStatusChanged",
    }
    produced_s = data.produce_backlog(
        stack.broker.bootstrap, [(names.form, forms), (names.status, statuses)]
    )
    progress(
        f"baseline input: {2 * leads:,} records encoded in {encoded_s:.1f}s, "
        f"produced in {produced_s:.1f}s ({2 * leads / produced_s:,.0f}/s)"
    )
    return BaselineInput(
        topics=[names.form, names.status],
        records=2 * leads,
        writers=raw_loop.writer_schemas(ids),
        prefix=names.prefix,
    )


def run_json_module(what: str, module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args`` in a subprocess; return the JSON of its last line of output.

    A measurement in a process of its own never shares a heap with the harness (the sandbox
    thread, the next run).
    """
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        msg = f"{what} measurement failed ({done.returncode}):\n{done.stderr[-2500:]}"
        raise BenchError(msg)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_state_memory(leads: int) -> dict[str, Any]:
    """Run :mod:`benchmarks.state_memory` in a subprocess and return its JSON."""
    return run_json_module("state memory", "benchmarks.state_memory", "--leads", str(leads))


def run_all(cfg: Config, stack: LocalStack, got: Collected, workdir: Path) -> dict[str, Any]:
    """Run every selected measurement ``cfg.repeat`` times; return extra report sections."""
    extra: dict[str, Any] = {}
    encoder = data.Encoder(stack.registry.url)
    bootstrap = stack.broker.bootstrap
    base: BaselineInput | None = None
    if any(cfg.wants(n) for n in ("raw", "noop", "naive")):
        try:
            base = prepare_baselines(stack, encoder, cfg)
        except Exception as exc:  # noqa: BLE001
            got.failures.append({"measurement": "baseline input", "error": str(exc)})
            progress(f"  FAILED baseline input: {exc}")

    for run in range(1, cfg.repeat + 1):
        tag = f"run {run}/{cfg.repeat}"
        if base is not None and cfg.wants("raw"):
            progress(f"{tag} - 1 raw loop: {base.records:,} records")
            got.attempt("raw", lambda: _raw(got, bootstrap, base))
        for mode in ("noop", "naive"):
            if base is not None and cfg.wants(mode):
                progress(f"{tag} - 2 {mode} Faust agent: {base.records:,} records")
                got.attempt(mode, partial(_baseline, got, mode, bootstrap, base, workdir, run))
        if cfg.wants("e2e"):
            progress(f"{tag} - 3 Leadstream e2e: {cfg.leads:,} leads at saturation")
            got.attempt("e2e", lambda: _saturation(got, stack, encoder, cfg))
        if cfg.wants("latency"):
            progress(
                f"{tag} - 4 latency: {cfg.latency_rate:,.0f} status changes/s for "
                f"{cfg.latency_seconds:g}s after a {cfg.latency_warmup:g}s warm-up, delivery "
                f"linger {cfg.latency_linger:g}s"
            )
            got.attempt("latency", lambda: _latency(got, stack, encoder, cfg))
        if cfg.wants("scale"):
            progress(f"{tag} - 7 scaling: {cfg.leads:,} leads, one worker then two")
            got.attempt("scale", lambda: _scale(got, stack, encoder, cfg))
        if cfg.wants("own"):
            progress(f"{tag} - 8 own work: {own_leads(cfg):,} leads, no Faust, no Kafka")
            got.attempt("own", lambda: _own(got, cfg))

    if cfg.wants("memory"):
        progress(f"5 state memory: {cfg.memory_leads:,} leads in a dict[bytes, bytes]")
        got.attempt("memory", lambda: _memory(got, cfg))

    if cfg.profile:
        progress(f"profile: one more e2e run of {cfg.leads:,} leads under py-spy (not in medians)")
        got.attempt("profile", lambda: extra.update(profile=_profile(stack, encoder, cfg, workdir)))
    return extra


def _raw(got: Collected, bootstrap: str, base: BaselineInput) -> None:
    result = raw_loop.run_raw_loop(
        bootstrap,
        base.topics,
        PARTITIONS,
        base.records,
        base.writers,
        timeout=60 + base.records / 5_000,
    )
    progress(
        f"  raw: {result.records:,} records in {result.seconds:.2f}s = {result.per_second:,.0f}/s"
    )
    got.add("raw", result.per_second)
    got.detail("raw", result.to_json())


def _baseline(
    got: Collected, mode: str, bootstrap: str, base: BaselineInput, workdir: Path, run: int
) -> None:
    output = f"{base.prefix}.{mode}-out-{run}"
    if mode == "naive":
        data.create_topics(bootstrap, [output], PARTITIONS)
    result = faust_baseline.run_baseline(
        mode,
        bootstrap=bootstrap,
        topics=base.topics,
        partitions=PARTITIONS,
        expected=base.records,
        app_id=f"{base.prefix}-{mode}-{run}",
        output_topic=output,
        workdir=workdir,
        timeout=120 + base.records / 500,
    )
    got.add(mode, result["records_per_s"])
    if mode == "noop" and result.get("cpu_s") and result.get("records"):
        got.add("noop_cpu", result["cpu_s"] / result["records"] * 1e6)
    got.detail(mode, result)


def _saturation(got: Collected, stack: LocalStack, encoder: data.Encoder, cfg: Config) -> None:
    result = e2e.run_saturation(
        stack, encoder, cfg.leads, linger=cfg.e2e_linger, env=dict(cfg.worker_env)
    )
    got.add("e2e", result.events_per_s_first_to_last)
    got.add("e2e_ready", result.events_per_s_ready_to_all)
    got.add("requests_per_1000", result.requests_per_1000)
    got.add("records_per_lead", result.consumed["per_lead"])
    got.add("state_per_lead", result.state["bytes_per_lead"])
    worker_pct = result.cpu_pct.get("worker")
    if worker_pct is not None:  # its CPU from ready to the last event accepted, per lead
        got.add("e2e_cpu", worker_pct / 100 * result.ready_to_all_s / result.leads * 1e6)
    got.detail("e2e", result.to_json())


def _scale(got: Collected, stack: LocalStack, encoder: data.Encoder, cfg: Config) -> None:
    env = dict(cfg.worker_env)
    one = scale.run_scale(stack, encoder, cfg.leads, 1, linger=cfg.e2e_linger, env=env)
    two = scale.run_scale(stack, encoder, cfg.leads, 2, linger=cfg.e2e_linger, env=env)
    got.add("scale_1", one.events_per_s)
    got.add("scale_2", two.events_per_s)
    got.add("scale_ratio", two.events_per_s / one.events_per_s)
    got.detail("scale", {"one": one.to_json(), "two": two.to_json()})


def _latency(got: Collected, stack: LocalStack, encoder: data.Encoder, cfg: Config) -> None:
    result = e2e.run_latency(
        stack,
        encoder,
        rate=cfg.latency_rate,
        seconds=cfg.latency_seconds,
        linger=cfg.latency_linger,
        warmup=cfg.latency_warmup,
        env=dict(cfg.worker_env),
    )
    got.add("latency_p50", result.p50_ms)
    got.add("latency_p95", result.p95_ms)
    got.add("latency_p99", result.p99_ms)
    if result.cold_start_ms:
        got.add("latency_cold_p99", result.cold_start_ms["p99"])
    got.add("latency_requests_per_1000", result.requests_per_1000)
    got.detail("latency", result.to_json())


def own_leads(cfg: Config) -> int:
    """Leads of measurement 8: the e2e run's, 10,000 at most (5-10 s of CPU per run)."""
    return min(cfg.leads, OWN_LEADS_MAX)


def _own(got: Collected, cfg: Config) -> None:
    result = run_json_module(
        "own work", "benchmarks.own_work", "--leads", str(own_leads(cfg)), "--repeat", "1"
    )
    progress(
        f"  {result['total_us']:.0f} us of CPU per lead (form {result['form_us']:.0f}, status "
        f"change {result['status_change_us']:.0f}, delivery {result['delivery_us']:.0f}): at most "
        f"{result['ceiling_leads_per_core_s']:,.0f} leads per CPU-second"
    )
    got.add("own", result["total_us"])
    got.detail("own", result)


def _memory(got: Collected, cfg: Config) -> None:
    result = run_state_memory(cfg.memory_leads)
    scale = " (extrapolated)" if result["extrapolated"] else ""
    progress(
        f"  typical lead: {result['json_bytes_typical_lead']} B of JSON; "
        f"{result['dict_bytes_per_lead']:.0f} B per lead in the dict = "
        f"{result['dict_mib_for_1m_leads']:,.0f} MiB for 1M leads{scale}"
    )
    got.add("state_json", result["json_bytes_typical_lead"])
    got.add("state_memory", result["dict_bytes_per_lead"])
    got.detail("memory", result)


def _profile(
    stack: LocalStack, encoder: data.Encoder, cfg: Config, workdir: Path
) -> dict[str, Any]:
    raw_path = cfg.out / "worker-profile.txt"
    raw_path.unlink(missing_ok=True)
    hook = pyspy.attach(raw_path, workdir / "py-spy.log")
    result = e2e.run_saturation(
        stack, encoder, cfg.leads, linger=cfg.e2e_linger, label="prof", on_ready=hook
    )
    summary = pyspy.summarise(raw_path)
    summary["run"] = result.to_json()
    summary["raw_stacks"] = str(raw_path)
    return summary


def _profile_text(profile: dict[str, Any]) -> str:
    lines = [
        "",
        f"worker profile (py-spy, {profile['samples']:,} samples; "
        f"stacks in {profile['raw_stacks']}):",
        "  threads: " + ", ".join(f"{name} {pct} %" for name, pct in profile["threads"]),
        "  top functions by self time:",
    ]
    lines += [f"    {pct:5.1f} %  {name}" for name, pct in profile["self_top"]]
    lines.append("  self time by package:")
    lines += [f"    {pct:5.1f} %  {name}" for name, pct in profile["self_by_package"]]
    return "\n".join(lines)


LATE_START_SHARE = 0.05  # a first delivery later than this share of the run is called late


def _notes(got: Collected) -> list[str]:
    """What a reader needs next to the figures."""
    notes = []
    runs = got.details.get("e2e", [])
    if runs:
        first = report.median([r["first_accepted_after_ready_s"] for r in runs])
        total = report.median([r["ready_to_all_s"] for r in runs])
        start = (
            f"The deliver agent starts late: first accepted event {first:.1f}s after ready of "
            f"{total:.1f}s in all (medians), so first -> last leaves out part of the work"
            if first > LATE_START_SHARE * total
            else f"First accepted event {first:.1f}s after ready of {total:.1f}s in all (medians)"
        )
        notes.append(
            "e2e events/s count status changes; the worker also consumes as many form submits "
            f"(input records/s = 2x). {start}; details.e2e has the stage split and CPU use"
        )
    latency = got.details.get("latency", [])
    behind = [d for d in latency if d.get("falling_behind")]
    if behind:
        growth = ", ".join(f"{d['growth_ms_per_s']:,.0f}" for d in behind)
        notes.append(
            f"latency: the worker fell behind the produce rate in {len(behind)} of "
            f"{len(latency)} run(s) (latency grew {growth} ms per second of producing): the "
            "percentiles include queueing"
        )
    busy = [c for c in got.contention if c["other_cpu_pct"] > BUSY_PCT]
    if busy:
        shown = ", ".join(f"{c['measurement']} {c['other_cpu_pct']:.0f} %" for c in busy)
        notes.append(
            f"the machine was not quiet: other processes used more than {BUSY_PCT:.0f} % of a "
            f"core during {len(busy)} measurement(s) ({shown}); rerun for clean figures"
        )
    if latency:
        notes.append(
            "latency: the path has two Kafka hops (input -> conversion -> delivery) and the "
            "agents' batch windows, and each fetch can wait up to LEADSTREAM_KAFKA_FETCH_MAX_WAIT "
            "(0.1 s by default): see details.latency to_conversion_ms and "
            "conversion_to_sandbox_ms"
        )
    return notes


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so every worker, Faust app and the broker are stopped."""
    raise KeyboardInterrupt


def make_workdir(out: Path) -> Path:
    """A log folder for this run, ``<out>/work/<pid>``; folders of finished runs are removed."""
    root = out / "work"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir() and not (old.name.isdigit() and Path(f"/proc/{old.name}").exists()):
            shutil.rmtree(old, ignore_errors=True)
        elif old.is_file():
            old.unlink(missing_ok=True)
    workdir = root / str(os.getpid())
    workdir.mkdir()
    return workdir


def main(argv: list[str] | None = None) -> int:
    """Run the harness; exit 0 when every selected measurement ran, 1 on a real failure."""
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = make_workdir(cfg.out)
    progress(
        f"{cfg.mode} run: {', '.join(cfg.only)}; baselines {cfg.size:,} records, "
        f"e2e {cfg.leads:,} leads, {cfg.repeat} run(s) each; logs in {workdir}"
    )
    got = Collected(quiet_wait=cfg.quiet_wait)
    stack = LocalStack(workdir=workdir, partitions=PARTITIONS)
    started = time.monotonic()
    extra: dict[str, Any] = {}
    broker = stack.broker.kind
    try:
        stack.start()
        progress(f"local stack up: broker {stack.broker.describe()}, sandbox {stack.sandbox.url}")
        broker = stack.broker.describe()
        extra = run_all(cfg, stack, got, workdir)
    except KeyboardInterrupt:
        got.failures.append({"measurement": "harness", "error": "interrupted"})
    except Exception as exc:  # noqa: BLE001 - the stack itself failed: report and exit 1
        got.failures.append(
            {"measurement": "harness", "error": str(exc), "traceback": traceback.format_exc()}
        )
    finally:
        stack.stop()
    elapsed = time.monotonic() - started
    summary = report.summarise(got.runs)
    title = (
        f"Leadstream benchmarks ({cfg.mode}): baselines {cfg.size:,} records, e2e {cfg.leads:,} "
        f"leads, latency {cfg.latency_rate:,.0f}/s for {cfg.latency_seconds:g}s after a "
        f"{cfg.latency_warmup:g}s warm-up (delivery linger {cfg.latency_linger:g}s; "
        f"e2e linger {cfg.e2e_linger:g}s); "
        f"medians of {cfg.repeat} run(s); {elapsed:.0f}s"
    )
    if cfg.worker_env:
        title += "; workers with " + " ".join(f"{k}={v}" for k, v in cfg.worker_env)
    notes = _notes(got)
    text = report.table(got.runs, summary, title, notes)
    text += "\n\n" + "\n".join(report.target_lines(summary, broker, cfg.latency_rate))
    if "profile" in extra:
        text += "\n" + _profile_text(extra["profile"])
    machine = report.machine_facts()
    machine["broker"] = broker
    text += (
        f"\n\nmachine: {machine['nproc']} CPUs, {machine['cpu_model']}, "
        f"Python {machine['python']}, faust-streaming {machine['faust_streaming']}"
        f"\nbroker: {broker}"
    )
    print(text, flush=True)
    out = cfg.out / "bench.json"
    report.write_json(
        out,
        {
            "mode": cfg.mode,
            "elapsed_s": round(elapsed, 1),
            "config": {
                "baseline_records": cfg.size,
                "e2e_leads": cfg.leads,
                "repeat": cfg.repeat,
                "measurements": list(cfg.only),
                "partitions": PARTITIONS,
                "latency_rate": cfg.latency_rate,
                "latency_seconds": cfg.latency_seconds,
                "latency_delivery_linger_s": cfg.latency_linger,
                "latency_warmup_s": cfg.latency_warmup,
                "e2e_delivery_linger_s": cfg.e2e_linger,
                "memory_leads": cfg.memory_leads,
                "worker_env": dict(cfg.worker_env),
            },
            "machine": machine,
            "runs": got.runs,
            **summary,
            "details": got.details,
            **extra,
            "notes": notes,
            "other_processes_cpu": got.contention,
            "failures": got.failures,
        },
    )
    progress(f"wrote {out}")
    for failure in got.failures:
        print(f"FAILED {failure['measurement']}: {failure['error']}", file=sys.stderr)
    return 1 if got.failures else 0
