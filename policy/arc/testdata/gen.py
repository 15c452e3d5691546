#!/usr/bin/python3
# Generates the ARC test vectors of policy/arc with dkimpy (Debian
# python3-dkim, python3-authres), the reference the tests compare with:
#   key.pem          the RSA-2048 test key (d=fwd.example, s=sel)
#   key.txt          its DNS TXT record
#   chain1.eml       a message with one ARC set (i=1, cv=none)
#   chain2.eml       the same forwarded again: two sets (i=2, cv=pass)
# Run from this folder: /usr/bin/python3 gen.py (commit the output).
import subprocess, dkim

subprocess.run(["openssl", "genrsa", "-out", "key.pem", "2048"], check=True, capture_output=True)
pub = subprocess.run(["openssl", "rsa", "-in", "key.pem", "-pubout", "-outform", "DER"], check=True, capture_output=True).stdout
import base64
txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
open("key.txt", "w").write(txt + "\n")
key = open("key.pem", "rb").read()

def dnsfunc(name, timeout=5):
    if name in (b"sel._domainkey.fwd.example.", b"sel._domainkey.fwd.example"):
        return txt.encode()
    return None

msg = (b"Authentication-Results: mx.fwd.example; spf=pass smtp.mailfrom=alice@orig.example;\r\n"
       b"  dkim=pass header.d=orig.example\r\n"
       b"From: Alice <alice@orig.example>\r\n"
       b"To: list@fwd.example\r\n"
       b"Subject: ARC test\r\n"
       b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
       b"Message-ID: <arc-test-1@orig.example>\r\n"
       b"\r\n"
       b"Hello,  this is the body.\r\n"
       b"\r\n")
hdrs = [b"From", b"To", b"Subject", b"Date", b"Message-ID"]
s1 = dkim.arc_sign(msg, b"sel", b"fwd.example", key, b"mx.fwd.example", include_headers=hdrs, timestamp=1796378400)
m1 = b"".join(s1) + msg
cv, _, why = dkim.arc_verify(m1, dnsfunc=dnsfunc)
assert cv == dkim.CV_Pass, (cv, why)
open("chain1.eml", "wb").write(m1)

ar2 = b"Authentication-Results: mx2.fwd.example; arc=pass header.oldest-pass=0 smtp.remote-ip=192.0.2.1\r\n"
s2 = dkim.arc_sign(ar2 + m1, b"sel", b"fwd.example", key, b"mx2.fwd.example", include_headers=hdrs, timestamp=1796382000)
m2 = b"".join(s2) + ar2 + m1
cv, _, why = dkim.arc_verify(m2, dnsfunc=dnsfunc)
assert cv == dkim.CV_Pass, (cv, why)
open("chain2.eml", "wb").write(m2)
print("ok")
