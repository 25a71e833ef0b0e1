#!/usr/bin/env python3
"""Bytes per stored FAL callback in webhook_events (heap + indexes + TOAST), as an instance
writes them, before and after retention drops the payload; and the steady-state size that
gives at a number of callbacks a day under the default retention (30 days with payload, 150
more without).

    DATABASE_URL=postgresql://…/<scratch database> REDIS_URL=… MINIO_*=… \\
      scripts/bench/growth.py [--callbacks 10000] [--per-day 10000] target/release/webhook-api

The database must be a fresh scratch one: the script ages and vacuums its rows. Needs psql.
The callbacks are signed and sent by tools/loadgen (`webhook-loadgen deliver`, beside the
binary unless --loadgen says where).
"""

import argparse
import json
import os
import pathlib
import subprocess
import time
import urllib.request

SECRET = b"growth-secret"
PORT = 18092


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--callbacks", type=int, default=10000)
    parser.add_argument("--per-day", type=int, default=10000)
    parser.add_argument("--loadgen", help="webhook-loadgen (default: beside the binary)")
    args = parser.parse_args()
    loadgen = args.loadgen or str(pathlib.Path(args.binary).with_name("webhook-loadgen"))
    database = os.environ["DATABASE_URL"]
    fixture_path = pathlib.Path(__file__).resolve().parents[2] / (
        "services/webhook-api/tests/fixtures/fal/ok_flux_lora_fast_training.json")
    fixture = json.loads(fixture_path.read_text())
    env = dict(os.environ, PORT=str(PORT), HOST="127.0.0.1", LOG_LEVEL="error",
               ENVIRONMENT="staging", FAL_WEBHOOK_SECRET=SECRET.decode(),
               REDIS_KEY_PREFIX="growth:", FILE_WORKERS="0")
    instance = subprocess.Popen([args.binary, "serve"], env=env)
    try:
        wait_ready()
        body = json.dumps(dict(fixture, request_id="{request_id}",
                               gateway_request_id="{request_id}"))
        sent = subprocess.run(
            [loadgen, "deliver", f"http://127.0.0.1:{PORT}/api/v1/avatar/status_update",
             "--prefix", "growth-", "--count", str(args.callbacks), "--rate", "2000",
             "--body", body],
            env=dict(os.environ, WEBHOOK_SECRET=SECRET.decode()), capture_output=True,
            text=True, check=True)
        summary = json.loads(sent.stdout)
    finally:
        instance.terminate()
        instance.wait()
    print(f"{summary['ok']} of {args.callbacks} callbacks answered 200 "
          f"(FAL's completion body, {len(json.dumps(fixture))} bytes)")

    full = per_row(database, "as stored")
    psql(database, "UPDATE webhook_events SET received_at = now() - interval '40 days'")
    swept = subprocess.run([args.binary, "retention"], env=env, capture_output=True, text=True,
                           check=True)
    print(swept.stdout.strip())
    dropped = per_row(database, "payload dropped")
    day = args.per_day
    steady = 30 * day * full + 150 * day * dropped
    print(f"steady state at {day} callbacks a day, default retention: {steady / 2**30:.2f} GiB")


def wait_ready() -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/ready")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the instance did not become ready")


def psql(database: str, query: str) -> str:
    return subprocess.run(["psql", "-qAtX", database, "-c", query], capture_output=True,
                          text=True, check=True).stdout.strip()


def per_row(database: str, label: str) -> float:
    psql(database, "VACUUM FULL webhook_events")
    rows = int(psql(database, "SELECT count(*) FROM webhook_events"))
    heap, indexes, total = map(int, psql(
        database, "SELECT pg_relation_size('webhook_events'), pg_indexes_size('webhook_events'), "
                  "pg_total_relation_size('webhook_events')").split("|"))
    print(f"{label}: {rows} rows; per row: heap {heap / rows:.0f} B, indexes "
          f"{indexes / rows:.0f} B, TOAST and maps {(total - heap - indexes) / rows:.0f} B, "
          f"total {total / rows:.0f} B")
    return total / rows


if __name__ == "__main__":
    main()
