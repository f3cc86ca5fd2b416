"""Signs a SendGrid Event Webhook batch as SendGrid does (ECDSA P-256, SHA-256, over the
timestamp followed by the body) and checks it with SendGrid's own library
(sendgrid.helpers.eventwebhook.EventWebhook) before printing it, so what the Rust test sends to
hookflow is a request SendGrid's verifier accepts. Also checks that the library refuses the
batch once altered. Prints JSON: public_key, timestamp, signature, body."""
import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

body = sys.stdin.read()
key = ec.generate_private_key(ec.SECP256R1())
public_key = base64.b64encode(
    key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
timestamp = str(int(time.time()))
signature = base64.b64encode(
    key.sign((timestamp + body).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
).decode()

hook = EventWebhook(public_key)
assert hook.verify_signature(body, signature, timestamp), "SendGrid's library refuses it"
assert not hook.verify_signature(body + " ", signature, timestamp), "an altered body passes"
print(json.dumps({"public_key": public_key, "timestamp": timestamp, "signature": signature, "body": body}))
