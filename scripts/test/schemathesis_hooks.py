"""Schemathesis hooks for scripts/test/schemathesis.sh: sign what it generates as the senders do.

A webhook route refuses an unsigned body (401), so without a signature every generated
callback would stop at the first check. Where a generated request carries a signature header,
it is replaced by a real signature of the exact bytes sent: on FAL's route, FAL's ED25519
headers (the key whose JWKS the instance reads) and X-Signature (HMAC-SHA256 with the test
secret); on a source's route, a JSON body goes to the Standard Webhooks source (webhook-id,
-timestamp, -signature) and a form to the GitHub one (X-Hub-Signature-256, X-GitHub-Event,
X-GitHub-Delivery), the two kinds of source the harness configures. A request generated
without a signature header stays unsigned, so the 401 answers are tested too.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import uuid

import schemathesis
from cryptography.hazmat.primitives import serialization

FAL_ROUTE = "/api/v1/avatar/status_update"
SOURCE_ROUTE = "/api/v1/webhooks/{source}"
FAL_SECRET = os.environ["SCHEMATHESIS_FAL_SECRET"].encode()
# name:secret of each source the instance has.
STANDARD_SOURCE, STANDARD_SECRET = os.environ["SCHEMATHESIS_STANDARD_SOURCE"].split(":", 1)
GITHUB_SOURCE, GITHUB_SECRET = os.environ["SCHEMATHESIS_GITHUB_SOURCE"].split(":", 1)
SIGNATURE_HEADERS = ("X-Signature", "X-Hub-Signature-256", "X-Gitea-Signature", "X-Plane-Signature",
                     "webhook-signature", "X-Fal-Webhook-Signature")
with open(os.environ["SCHEMATHESIS_FAL_KEY"], "rb") as key_file:
    FAL_KEY = serialization.load_pem_private_key(key_file.read(), password=None)


def _header(headers, name):
    """The key of `name` in `headers`, whatever its case."""
    return next((key for key in headers if key.lower() == name.lower()), None)


def _body_bytes(case):
    """The bytes the request will carry, or None where Schemathesis sends no body we can
    reproduce (none at all, or raw bytes it chose)."""
    if case.media_type == "application/json" and isinstance(
        case.body, (dict, list, str, int, float, bool, type(None))
    ):
        return json.dumps(case.body).encode()
    if case.media_type == "application/x-www-form-urlencoded" and isinstance(case.body, dict):
        return urllib.parse.urlencode(case.body).encode()
    return None


def _sign_fal(headers, body):
    hmac_header = _header(headers, "X-Signature")
    if hmac_header is not None:
        headers[hmac_header] = hmac.new(FAL_SECRET, body, hashlib.sha256).hexdigest()
    fal_header = _header(headers, "X-Fal-Webhook-Signature")
    if fal_header is None:
        return
    for name in ("X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp"):
        existing = _header(headers, name)
        if existing is not None:
            del headers[existing]
    request_id, user_id, timestamp = "st-request", "st-user", str(int(time.time()))
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()])
    headers.update({
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
    })
    headers[fal_header] = FAL_KEY.sign(message.encode()).hex()


def _route_to_source(case):
    """A form goes to the GitHub source, JSON to the Standard Webhooks one: each source takes
    only its sender's media types, and other names are 404s. The bytes to send."""
    if case.media_type == "application/x-www-form-urlencoded":
        case.path_parameters = {**(case.path_parameters or {}), "source": GITHUB_SOURCE}
        # The form's payload field is the event's JSON: the generated text goes inside one.
        case.body = {**case.body, "payload": json.dumps({"action": "opened", "text": str(case.body.get("payload"))})}
    else:
        case.path_parameters = {**(case.path_parameters or {}), "source": STANDARD_SOURCE}
    return _body_bytes(case)


def _sign_source(case, headers, body):
    """The headers of the sender whose source the request goes to."""
    for name in SIGNATURE_HEADERS + ("webhook-id", "webhook-timestamp"):
        existing = _header(headers, name)
        if existing is not None:
            del headers[existing]
    if case.path_parameters["source"] == GITHUB_SOURCE:
        digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers.update({
            "X-Hub-Signature-256": f"sha256={digest}",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
        })
        return
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    message_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    signature = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers.update({
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(signature).decode(),
    })


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.method.upper() != "POST" or case.operation.path not in (FAL_ROUTE, SOURCE_ROUTE):
        return
    body = _body_bytes(case)
    if body is None:
        return
    if case.operation.path == SOURCE_ROUTE:
        body = _route_to_source(case)
    headers = dict(case.headers or {})
    if any(_header(headers, name) for name in SIGNATURE_HEADERS):
        if case.operation.path == FAL_ROUTE:
            _sign_fal(headers, body)
        else:
            _sign_source(case, headers, body)
        case.headers = headers
    # Sent as these very bytes, the ones signed.
    kwargs["data"] = body
