#!/usr/bin/env python3
"""Create a blob container on Azurite: azurite_mkcontainer.py NAME [ENDPOINT].

Container creation needs a SharedKey-signed request; this uses Azurite's well-known dev account.
"""
import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.request
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
name = sys.argv[1]
endpoint = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:10000"
date, version, ctype = formatdate(usegmt=True), "2023-11-03", "application/octet-stream"
to_sign = ("PUT\n" + "\n" * 4 + ctype + "\n" * 7 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
# An explicit content type: urllib would add a form one to a PUT with a body and break the signature.
req = urllib.request.Request(f"{endpoint}/{ACCOUNT}/{name}?restype=container", method="PUT", data=b"",
                             headers={"Content-Type": ctype, "x-ms-date": date, "x-ms-version": version,
                                      "Authorization": f"SharedKey {ACCOUNT}:{sig}"})
try:
    with urllib.request.urlopen(req) as r:
        print("created container", name, r.status)
except urllib.error.HTTPError as e:
    if e.code == 409:
        print("container exists", name)
    else:
        print(e.code, e.read().decode()[:500])
        sys.exit(1)
