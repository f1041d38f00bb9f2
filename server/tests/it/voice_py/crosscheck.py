"""Cross-checks OpenGuild's LiveKit tokens with LiveKit's own Python SDK (PyPI livekit-api).

Reads JSON on stdin: {"key", "secret", "verify": [jwt...], "make": [{"identity", "room", "sources"}...],
"webhook_body"}. Writes JSON: {"verified": [claims...], "made": [jwt...], "webhook_auth": jwt}.
A token that does not verify fails the script (and so the test).
"""
import base64
import hashlib
import json
import sys

from livekit import api

req = json.load(sys.stdin)
verifier = api.TokenVerifier(req["key"], req["secret"])
verified = []
for token in req["verify"]:
    c = verifier.verify(token)
    v = c.video
    verified.append({
        "identity": c.identity,
        "room_join": bool(v.room_join),
        "room": v.room,
        "room_admin": bool(v.room_admin),
        "can_publish": bool(v.can_publish),
        "can_publish_sources": list(v.can_publish_sources or []),
        "can_subscribe": bool(v.can_subscribe),
        "attributes": dict(c.attributes or {}),
    })
made = []
for m in req["make"]:
    grants = api.VideoGrants(room_join=True, room=m["room"], can_publish_sources=m["sources"])
    made.append(api.AccessToken(req["key"], req["secret"]).with_identity(m["identity"]).with_grants(grants).to_jwt())
digest = base64.b64encode(hashlib.sha256(req["webhook_body"].encode()).digest()).decode()
webhook_auth = api.AccessToken(req["key"], req["secret"]).with_sha256(digest).to_jwt()
json.dump({"verified": verified, "made": made, "webhook_auth": webhook_auth}, sys.stdout)
