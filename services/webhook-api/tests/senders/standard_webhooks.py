"""Signs a Standard Webhooks delivery with implementations other than the service's own: v1
with the `standardwebhooks` library (the spec's reference Python package), v1a with a fresh
ED25519 key from `cryptography` (OpenSSL), over the spec's `{id}.{timestamp}.{body}`.

    standard_webhooks.py WHSEC_SECRET MSG_ID TIMESTAMP BODY
prints {"v1": "v1,…", "v1a": "v1a,…", "whpk": "whpk_…"} (the v1a key's public half).
"""

import base64
import json
import sys
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks.webhooks import Webhook


def main() -> None:
    secret, msg_id, timestamp, body = sys.argv[1:5]
    at = datetime.fromtimestamp(int(timestamp), tz=timezone.utc)
    v1 = Webhook(secret).sign(msg_id, at, body)
    key = Ed25519PrivateKey.generate()
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    v1a = "v1a," + base64.b64encode(key.sign(signed)).decode()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    print(json.dumps({"v1": v1, "v1a": v1a, "whpk": "whpk_" + base64.b64encode(public).decode()}))


if __name__ == "__main__":
    main()
