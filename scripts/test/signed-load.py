#!/usr/bin/env python3
"""Sends HMAC-signed FAL completions through the cluster at a steady rate, retrying each on a
5xx answer or a broken connection (as FAL retries), and prints a JSON summary (with every 5xx
answer and broken connection counted, retried or not).

Usage: signed-load.py URL SECRET CA_FILE REQUEST_IDS_FILE [--rate N] [--stop-file PATH]
One completion per request id in REQUEST_IDS_FILE; with --stop-file the run ends early once
that file exists (the ids not yet sent are reported as unsent)."""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("secret")
    parser.add_argument("ca_file")
    parser.add_argument("ids_file")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--stop-file")
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    context = ssl.create_default_context(cafile=args.ca_file)
    ids = [line.strip() for line in open(args.ids_file) if line.strip()]
    lock = threading.Lock()
    stats = {"sent": 0, "ok": 0, "failed": 0, "retried_callbacks": 0, "retries": 0,
             "answers_5xx": 0, "connection_errors": 0, "results": {}, "unsent": 0}

    def send(request_id):
        body = json.dumps({"request_id": request_id, "status": "completed"}).encode()
        signature = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
        tries = 0
        for _ in range(60):
            tries += 1
            try:
                conn = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=15)
                conn.request("POST", url.path, body, {
                    "Content-Type": "application/json",
                    "X-Signature": "sha256=" + signature,
                })
                response = conn.getresponse()
                answer = response.read()
                conn.close()
                if response.status == 200:
                    result = json.loads(answer).get("result", "?")
                    with lock:
                        stats["ok"] += 1
                        stats["results"][result] = stats["results"].get(result, 0) + 1
                        if tries > 1:
                            stats["retried_callbacks"] += 1
                            stats["retries"] += tries - 1
                    return
                if response.status < 500:
                    break
                with lock:
                    stats["answers_5xx"] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    stats["connection_errors"] += 1
            time.sleep(0.5)
        with lock:
            stats["failed"] += 1

    threads = []
    interval = 1.0 / args.rate
    for request_id in ids:
        if args.stop_file and os.path.exists(args.stop_file):
            break
        thread = threading.Thread(target=send, args=(request_id,))
        thread.start()
        threads.append(thread)
        stats["sent"] += 1
        time.sleep(interval)
    for thread in threads:
        thread.join()
    stats["unsent"] = len(ids) - stats["sent"]
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
