#!/usr/bin/env python3
"""The console's pages over millions of stored deliveries: p50/p95 of each page, first and
next, unfiltered, filtered and searched by body, as an operator's browser asks for them.

    DATABASE_URL=postgresql://…/<scratch database> REDIS_URL=… MINIO_*=… \\
      scripts/bench/console.py [--rows 1000000] [--repeats 40] [--json OUT] [--reuse] target/release/webhook-api

The database must be a fresh scratch one. The script migrates it with the binary, stores ROWS
deliveries as the cluster would have over 180 days (ids in arrival order: FAL completions
mostly, GitHub pushes, Plane and job callbacks, a few unmatched and refused), starts the
instance (which builds the console's indexes concurrently, as in production) and waits until
they are valid, signs in, and times each page. Needs psql.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

PORT = 18093
TOKEN = "bench-console-token-0123456789abcdef0123456789"


def psql(database, query):
    return subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", database, "-c", query],
                          capture_output=True, text=True, check=True).stdout.strip()


def seed(database, rows):
    """ROWS deliveries in batches of a million; received_at grows with the id, 180 days long."""
    per_second = rows / (180 * 86400)
    done = 0
    while done < rows:
        upto = min(done + 1_000_000, rows)
        psql(database, f"""
        INSERT INTO webhook_events (source, delivery_key, delivery_id, fal_request_id, event,
            avatar_id, outcome, outcome_reason, signature_scheme, http_request_id, instance_id,
            headers, payload, status_code, processing_ms, received_at, last_delivered_at)
        SELECT s.source,
            CASE WHEN s.outcome = 'rejected' THEN NULL ELSE s.source || ':' || g END,
            CASE WHEN s.source IN ('github', 'plane') THEN md5('d' || g)::uuid::text END,
            CASE WHEN s.source = 'fal' THEN 'req-' || g END,
            s.event,
            CASE WHEN s.source = 'fal' THEN md5('a' || g)::uuid END,
            s.outcome, NULL, s.scheme, 'bench-' || g, 'bench',
            '{{"user-agent": "bench", "content-type": "application/json"}}',
            CASE WHEN s.outcome = 'rejected' THEN NULL
                 WHEN s.source = 'fal' THEN jsonb_build_object('request_id', 'req-' || g,
                    'gateway_request_id', 'req-' || g, 'status', 'OK', 'error', NULL,
                    'payload', jsonb_build_object('diffusers_lora_file', jsonb_build_object(
                        'url', 'https://v3.fal.media/files/b/' || md5(g::text) || '_lora.safetensors',
                        'content_type', 'application/octet-stream',
                        'file_name', 'pytorch_lora_weights.safetensors', 'file_size', 89745224),
                      'config_file', jsonb_build_object(
                        'url', 'https://v3.fal.media/files/b/' || md5(g::text) || '_config.json',
                        'file_name', 'config.json', 'file_size', 452)))
                 WHEN s.source = 'github' THEN jsonb_build_object(
                    'ref', CASE WHEN g % 97 = 0 THEN 'refs/heads/release-' || g ELSE 'refs/heads/main' END,
                    'before', md5('b' || g) || '00000000', 'after', md5('c' || g) || '00000000',
                    'repository', jsonb_build_object('full_name', 'team/avatar-bot'),
                    'pusher', jsonb_build_object('name', 'dev-' || (g % 7)),
                    'head_commit', jsonb_build_object('message', 'change ' || g))
                 ELSE jsonb_build_object('job_id', g, 'status', 'completed', 'processed', g % 100)
            END,
            CASE WHEN s.outcome = 'rejected' THEN 401 ELSE 200 END,
            (g % 50) / 3.0,
            now() - interval '180 days' + (g / {per_second}) * interval '1 second',
            now() - interval '180 days' + (g / {per_second}) * interval '1 second'
        FROM generate_series({done + 1}, {upto}) g,
        LATERAL (SELECT
            CASE WHEN g % 100 < 90 THEN 'fal' WHEN g % 100 < 96 THEN 'github'
                 WHEN g % 100 < 98 THEN 'plane' ELSE 'jobs' END AS source) src,
        LATERAL (SELECT src.source,
            CASE src.source WHEN 'fal' THEN 'completed' WHEN 'github' THEN 'push'
                 WHEN 'plane' THEN 'issue' ELSE 'job.completed' END AS event,
            CASE WHEN g % 1000 = 7 THEN 'rejected'
                 WHEN src.source = 'fal' AND g % 100 = 3 THEN 'unmatched'
                 WHEN src.source = 'fal' THEN 'applied' ELSE 'accepted' END AS outcome,
            CASE src.source WHEN 'fal' THEN 'hmac' WHEN 'github' THEN 'github'
                 WHEN 'plane' THEN 'plane' ELSE 'hmac' END AS scheme) s""")
        done = upto
        print(f"  {done} rows", file=sys.stderr, flush=True)
    psql(database, "VACUUM ANALYZE webhook_events")


def wait_ready(path="/health/ready", seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the instance did not become ready")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", help="append one JSON line per page here")
    parser.add_argument("--reuse", action="store_true",
                        help="time the pages of a database this script seeded before")
    args = parser.parse_args()
    database = os.environ["DATABASE_URL"]
    env = dict(os.environ, PORT=str(PORT), HOST="127.0.0.1", LOG_LEVEL="warn",
               ENVIRONMENT="staging", FAL_WEBHOOK_SECRET="bench-console-secret",
               REDIS_KEY_PREFIX="bench-console:", FILE_WORKERS="0", RETENTION_EVENT_DAYS="0",
               RETENTION_PAYLOAD_DAYS="0", WEBHOOK_SOURCES="github:github,plane:plane,jobs:hmac",
               WEBHOOK_SOURCE_GITHUB_SECRETS="s", WEBHOOK_SOURCE_PLANE_SECRETS="s",
               WEBHOOK_SOURCE_JOBS_SECRETS="s", OPERATOR_TOKENS=f"bench:read+replay:{TOKEN}",
               CONSOLE_QUERY_TIMEOUT_MS="5000", RETENTION_REJECTED_DAYS="3650")
    subprocess.run([args.binary, "migrate"], env=env, check=True)
    started = time.time()
    if args.reuse:
        args.rows = int(psql(database, "SELECT count(*) FROM webhook_events"))
    else:
        print(f"seeding {args.rows} deliveries", file=sys.stderr)
        seed(database, args.rows)
    seeded = time.time() - started
    instance = subprocess.Popen([args.binary, "serve"], env=env)
    try:
        wait_ready()
        started = time.time()
        while psql(database, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = "
                             "i.indexrelid WHERE c.relname LIKE 'webhook_events_%' AND c.relname "
                             "IN ('webhook_events_source_event_idx', 'webhook_events_delivery_id_idx', "
                             "'webhook_events_avatar_idx', 'webhook_events_payload_idx') "
                             "AND i.indisvalid") != "4":
            time.sleep(1)
        indexed = time.time() - started
        print(f"seeded in {seeded:.0f} s, indexes built in {indexed:.0f} s", file=sys.stderr)
        results = measure(database, args.rows, args.repeats)
    finally:
        instance.terminate()
        instance.wait()
    sizes = psql(database, "SELECT pg_size_pretty(pg_relation_size('webhook_events')) || ' heap, ' || "
                           "string_agg(c.relname || ' ' || pg_size_pretty(pg_relation_size(c.oid)), ', ') "
                           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE i.indrelid = 'webhook_events'::regclass")
    print(f"sizes: {sizes}")
    print(f"| page ({args.rows} deliveries) | rows | p50 ms | p95 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['page']} | {r['rows']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} |")
    if args.json:
        with open(args.json, "a") as out:
            for r in results:
                out.write(json.dumps(dict(r, label=f"console {r['page']}", deliveries=args.rows,
                                          seeded_s=round(seeded), indexed_s=round(indexed))) + "\n")
    slow = [r["page"] for r in results if r["p95_ms"] >= 100]
    if slow:
        print(f"over 100 ms at p95: {', '.join(slow)}")


def measure(database, rows, repeats):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    conn.request("POST", "/console/login", urllib.parse.urlencode({"token": TOKEN}),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    answer.read()
    cookie = answer.getheader("Set-Cookie").split(";")[0]
    mid = rows // 2
    github_mid = int(psql(database, f"SELECT max(id) FROM webhook_events WHERE source = 'github' AND id < {mid}"))
    day = psql(database, f"SELECT to_char(received_at, 'YYYY-MM-DD\"T\"HH24:MI') FROM webhook_events WHERE id = {mid}")
    day_end = psql(database, f"SELECT to_char(received_at + interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI') FROM webhook_events WHERE id = {mid}")
    hour_end = psql(database, f"SELECT to_char(received_at + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI') FROM webhook_events WHERE id = {mid}")
    release = (mid // 97) * 97
    while psql(database, f"SELECT source FROM webhook_events WHERE id = {release}") != "github":
        release -= 97
    pages = [
        ("first page", {}),
        ("next page (middle)", {"before": mid}),
        ("source github", {"source": "github"}),
        ("source github, next page (middle)", {"source": "github", "before": github_mid}),
        ("source plane, event issue", {"source": "plane", "event": "issue"}),
        ("outcome rejected", {"outcome": "rejected"}),
        ("outcome rejected, next page (middle)", {"outcome": "rejected", "before": mid}),
        ("sender's delivery id", {"delivery_id": psql(database, f"SELECT md5('d' || {github_mid})::uuid")}),
        ("FAL request id", {"request_id": f"req-{mid - mid % 100 + 1}"}),
        ("avatar id", {"avatar_id": psql(database, f"SELECT md5('a' || {mid - mid % 100 + 1})::uuid")}),
        ("one hour", {"since": day, "until": hour_end}),
        ("one day", {"since": day, "until": day_end}),
        ("one day, next page (middle)", {"since": day, "until": day_end, "before": mid + rows // 360}),
        ("one day, source github", {"since": day, "until": day_end, "source": "github"}),
        ("body: a rare push", {"body": json.dumps({"ref": f"refs/heads/release-{release}"})}),
        ("body: common", {"body": json.dumps({"status": "OK"})}),
        ("body: common, next page (middle)", {"body": json.dumps({"status": "OK"}), "before": mid}),
        ("body + source", {"body": json.dumps({"pusher": {"name": "dev-3"}}), "source": "github"}),
    ]
    results = []
    for name, query in pages:
        path = "/console/?" + urllib.parse.urlencode(query)
        times, shown = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            answer = conn.getresponse()
            page = answer.read().decode()
            times.append((time.perf_counter() - started) * 1000)
            if answer.status != 200 or 'class="problem"' in page:
                raise SystemExit(f"{name}: {answer.status} {page[page.find('problem'):][:300]}")
            shown = page.count("<tr><td><a href=\"/console/deliveries/")
        times.sort()
        results.append({"page": name, "rows": shown, "p50_ms": statistics.median(times),
                        "p95_ms": times[int(len(times) * 0.95) - 1], "max_ms": times[-1]})
        print(f"  {name}: {shown} rows, p95 {results[-1]['p95_ms']:.1f} ms", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
