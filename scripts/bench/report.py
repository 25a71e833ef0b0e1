#!/usr/bin/env python3
"""The table of a benchmark run (scripts/bench/run.sh): each figure with its baseline and ratio.

Usage: scripts/bench/report.py RESULTS.jsonl   (prints Markdown)
"""
import json
import statistics
import sys

WARMUP_SECONDS = 2  # loadgen_run's --warmup: CPU is counted over warmup and measured time


def main(path):
    runs = {}
    for line in open(path):
        if line.strip():
            record = json.loads(line)
            runs[record["label"]] = record  # the last of a label wins

    def get(label):
        return runs.get(label)

    out = []
    hot(out, runs)
    pgbench = get("pgbench")
    static = get("nginx static 200")

    def ratio(value, base):
        return f"{value / base:.2f}×" if value and base else "–"

    out.append("## Throughput at saturation\n")
    out.append("| measurement | req/s | p50 ms | p99 ms | p99.9 ms | max ms | ratio | to |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    if pgbench:
        out.append(f"| **pgbench**, the ingest transaction, {pgbench['connections']} connections, "
                   f"avatars: {pgbench.get('avatars_schema', 'own')} "
                   f"| {pgbench['throughput']:.0f} | | | | | 1.00× | baseline (avg {pgbench['latency_avg_ms']} ms) |")
    if static:
        row(out, "**nginx static 200** (TLS, same nginx)", static, "1.00×", "baseline")
    for label, base, base_name in [
        ("single saturation hmac", pgbench, "pgbench"),
        ("single saturation ed25519", pgbench, "pgbench"),
        ("single saturation http2", pgbench, "pgbench"),
        ("single saturation mixed", pgbench, "pgbench"),
        ("single saturation redeliveries", pgbench, "pgbench"),
        ("single saturation bad signatures", static, "nginx static"),
        ("cluster saturation hmac", pgbench, "pgbench"),
        ("cluster saturation hmac", static, "nginx static"),
        ("cluster saturation bad signatures", static, "nginx static"),
        ("nginx proxying to a static 401", static, "nginx static"),
    ]:
        run = get(label)
        if run:
            row(out, label, run, ratio(run["throughput"], base and base["throughput"]), base_name)
    single = get("single saturation hmac")
    for label in sorted(runs):
        if label.startswith("single saturation payload"):
            row(out, label, runs[label], ratio(runs[label]["throughput"], single and single["throughput"]),
                "single saturation hmac")
    small, large = get("rows 1000 progress updates"), get("rows 1000000 progress updates")
    if small:
        row(out, "progress updates, 1 thousand avatars", small, "1.00×", "baseline")
    if large:
        row(out, "progress updates, 1 million avatars", large,
            ratio(large["throughput"], small and small["throughput"]), "1 thousand avatars")

    latency_under_steady_load(out, runs)

    end_to_end(out, runs.get("cluster end-to-end"))

    out.append("\n## Where the CPU goes (ms of CPU per request, during the saturation runs)\n")
    out.append("| run | instance(s) | PostgreSQL | Redis | nginx | rest (load generator) | machine | cores busy |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, cpu in runs.items():
        if not label.endswith(" cpu"):
            continue
        run = get(label[: -len(" cpu")])
        if not run:
            continue
        seconds = run["seconds"] + run.get("warmup", WARMUP_SECONDS)
        requests = run["throughput"] * seconds
        per = lambda ticks: ticks / cpu["ticks_per_second"] * 1000 / requests
        rest = cpu["machine"] - cpu["instance"] - cpu["postgres"] - cpu["redis"] - cpu["nginx"]
        busy = cores_busy(run, cpu)
        out.append(f"| {run['label']} | {per(cpu['instance']):.3f} | {per(cpu['postgres']):.3f} | "
                   f"{per(cpu['redis']):.3f} | {per(cpu['nginx']):.3f} | {per(rest):.3f} | "
                   f"{per(cpu['machine']):.3f} | {busy:.2f} |")

    out.append("\n## Memory\n")
    out.append("| measurement | MiB |")
    out.append("|---|---:|")
    idle = get("single idle rss")
    if idle:
        out.append(f"| one instance idle (RSS) | {idle['rss_kib'] / 1024:.1f} |")
    for label in ("single saturation hmac cpu", "cluster saturation hmac cpu"):
        cpu = get(label)
        if cpu and cpu["instances"]:
            out.append(f"| peak RSS per instance, {label[:-4]} | {cpu['instances_peak_rss_kib'] / 1024 / cpu['instances']:.1f} |")
    copy = get("file copy")
    if copy:
        out.append(f"| one instance idle before the copy (RSS) | {copy['idle_rss_mib']} |")
        out.append(f"| more while copying a 200 MiB file | +{copy['copy_rss_increase_mib']} |")
        out.append(f"\nFile copy CDN → S3, 200 MiB: worker {copy['worker_seconds']:.2f} s, baseline "
                   f"(curl, then aws s3 cp) {copy['baseline_seconds']:.2f} s: "
                   f"{copy['baseline_seconds'] / copy['worker_seconds']:.2f}× the baseline's speed.")

    pages = [v for k, v in runs.items() if k.startswith("console ")]
    if pages:
        out.append(f"\n## The console's pages over {pages[0]['deliveries']:,} deliveries "
                   f"(stored in {pages[0]['seeded_s']} s, indexed in {pages[0]['indexed_s']} s)\n")
        out.append("| page | rows | p50 ms | p95 ms | under 100 ms at p95 |")
        out.append("|---|---:|---:|---:|:---:|")
        for page in pages:
            out.append(f"| {page['page']} | {page['rows']} | {page['p50_ms']:.1f} | "
                       f"{page['p95_ms']:.1f} | {'yes' if page['p95_ms'] < 100 else 'NO'} |")

    benches = {k[len("cargo bench "):]: v["ns"] for k, v in runs.items() if k.startswith("cargo bench ")}
    cg = get("callgrind instance")
    if benches or cg:
        out.append("\n## CPU per request in the instance\n")
        out.append("| measurement | per request |")
        out.append("|---|---:|")
        for name, ns in benches.items():
            out.append(f"| `cargo bench` {name} | {ns / 1000:.2f} µs |")
        if cg and cg["requests"]:
            out.append(f"| instructions per signed completion, whole instance (callgrind, "
                       f"{cg['requests']} requests) | {cg['instructions'] / cg['requests']:,.0f} |")
    print("\n".join(out))


def latency_under_steady_load(out, runs):
    """The half-rate runs, each beside the disk's fsync probe of the same seconds."""
    out.append("\n## Latency under a steady load (half the saturation rate)\n")
    # The probe's own threshold, as each of its records carries it.
    stall_ms = next((r["stall_ms"] for r in runs.values() if "stall_ms" in r), None)
    stalled = f"seconds with an fsync > {stall_ms:.0f} ms" if stall_ms else "stalled seconds"
    out.append("| measurement | rate req/s | achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
               f"| p99 ÷ p50 | disk beside it: {stalled} | slowest fsync ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    alone = runs.get("disk alone")
    if alone:
        f = alone["fsync_ms"]
        out.append(f"| the disk alone: 8 KiB write + fdatasync | {alone['rate']:.0f} | | {f['p50']:.2f} | "
                   f"| {f['p99']:.2f} | | {f['max']:.2f} | {f['p99'] / f['p50']:.2f} | "
                   f"{alone['stalled_seconds']} of {len(alone['slowest_per_second_ms'])} | {f['max']:.2f} |")
    seconds_lines = []
    for label in ("pgbench half-rate", "single half-rate hmac", "cluster half-rate hmac",
                  "pgbench at the cluster's half-rate"):
        run = runs.get(label)
        if not run:
            continue
        l = run["latency_ms"]
        disk = runs.get(f"{label} disk")
        beside = (f"{disk['stalled_seconds']} of {len(disk['slowest_per_second_ms'])} | {disk['fsync_ms']['max']:.2f}"
                  if disk else "– | –")
        out.append(f"| {label} | {run['target_rate']:.0f} | {run['throughput']:.0f} | {l['p50']:.2f} | "
                   f"{l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.2f} | {l['p99'] / l['p50']:.2f} "
                   f"| {beside} |")
        if disk and run.get("timeline"):
            seconds_lines.append(slow_seconds_beside_disk(label, run, disk))
    if seconds_lines:
        out.append("\nEach second of the run: its slowest answer / the slowest fsync beside it (ms). A slow "
                   "second is one whose slowest answer took over 3× the run's p50; a stall, an fsync over "
                   f"{stall_ms:.0f} ms in that second or next to it.\n")
        out.extend(seconds_lines)


def end_to_end(out, run):
    """What a bot's user waits for, from a completion's arrival through the cluster."""
    if not run:
        return
    out.append(f"\n## End to end through the cluster, {run['rate']:.0f} completions a second\n")
    out.append(f"{run['acknowledged']} of {run['sent']} acknowledged; rows never read COMPLETED: "
               f"{run['rows_missing']}, stream entries missing: {run['entries_missing']} (rows read "
               f"every {run['poll_ms']:g} ms: each row is timed at the start of the read that found it).\n")
    out.append("| from sending the completion to | p50 ms | p90 ms | p99 ms | max ms |")
    out.append("|---|---:|---:|---:|---:|")
    for name, key in (("its answer (200)", "answer_ms"), ("the avatar's row reading COMPLETED", "row_completed_ms"),
                      ("its entry on the bot's stream", "stream_entry_ms")):
        p = run.get(key)
        if p:
            out.append(f"| {name} | {p['p50']:.2f} | {p['p90']:.2f} | {p['p99']:.2f} | {p['max']:.2f} |")


def slow_seconds_beside_disk(label, run, disk):
    answers = [slowest for _, slowest in run["timeline"]]
    fsyncs = disk["slowest_per_second_ms"]
    n = min(len(answers), len(fsyncs))
    slow = [i for i in range(n) if answers[i] > 3 * run["latency_ms"]["p50"]]
    stalled = [i for i in slow if max(fsyncs[max(0, i - 1):i + 2]) > disk["stall_ms"]]
    pairs = " ".join(f"{answers[i]:.0f}/{fsyncs[i]:.0f}" for i in range(n))
    return f"- {label}: {len(slow)} slow seconds, {len(stalled)} of them beside a stall: {pairs}"


def hot(out, runs):
    """The target's rows: pgbench (the minimal durable transaction, and the service's own) and
    one instance on the hot table, each repeated on fresh databases; ratios are median to
    median, max ÷ min shows each side's spread, and cores busy whether it kept both at work."""
    def repeated(prefix):
        return [r for label, r in sorted(runs.items()) if label.startswith(prefix + " #")
                and not label.endswith(" cpu")]

    sides = [("pgbench, the minimal transaction", repeated("hot pgbench minimal")),
             ("pgbench, the service's transaction", repeated("hot pgbench")),
             ("one instance, signed completions", repeated("hot single saturation hmac"))]
    sides = [(name, rows) for name, rows in sides if rows]
    if not sides:
        return
    medians = {name: statistics.median(r["throughput"] for r in rows) for name, rows in sides}
    minimal = medians.get("pgbench, the minimal transaction")
    service = medians.get("pgbench, the service's transaction")
    out.append("## The hot table (fits in memory), repeated on fresh databases\n")
    out.append("| measurement | runs | avatars | min | median | max | max ÷ min | cores busy "
               "| ÷ minimal pgbench | ÷ service's pgbench |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in sides:
        values = sorted(r["throughput"] for r in rows)
        busy = sorted(cores_busy(r, runs[r["label"] + " cpu"]) for r in rows if r["label"] + " cpu" in runs)
        busy_text = f"{busy[0]:.2f}–{busy[-1]:.2f}" if busy else "–"
        ratio = lambda base: f"{medians[name] / base:.2f}×" if base else "–"
        # The instance's runs use as many avatars as the pgbench runs beside them.
        avatars = rows[0].get("avatars") or sides[0][1][0].get("avatars", "")
        out.append(f"| {name} | {len(values)} | {avatars} | {values[0]:.0f} | {medians[name]:.0f} | "
                   f"{values[-1]:.0f} | {values[-1] / values[0]:.2f} | {busy_text} | {ratio(minimal)} | "
                   f"{ratio(service)} |")
    for r in repeated("hot single saturation hmac"):
        l = r["latency_ms"]
        out.append(f"| {r['label']}: p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms | | | | | | | | | |")
    out.append("")


def cores_busy(run, cpu):
    """How many of the machine's cores were at work, on average, over the run (warm-up included,
    as its CPU was counted)."""
    seconds = run["seconds"] + run.get("warmup", WARMUP_SECONDS)
    return cpu["machine"] / cpu["ticks_per_second"] / seconds


def row(out, name, run, ratio_text, base_name):
    l = run["latency_ms"]
    flag = f" ({run['unexpected']} unexpected)" if run.get("unexpected") else ""
    out.append(f"| {name}{flag} | {run['throughput']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | "
               f"{l['p999']:.2f} | {l['max']:.2f} | {ratio_text} | {base_name} |")


if __name__ == "__main__":
    main(sys.argv[1])
