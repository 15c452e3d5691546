#!/usr/bin/python3
# arcverify with a fixed key: dkimpy's arc_verify on the message in
# argv[1], the DNS TXT lookup answered from argv[2] ("name TXT-value"
# lines) instead of the network (dkimpy takes a dnsfunc only in Python).
# Prints "cv=<pass|fail|none> <reason>"; exit 0 only for pass.
import sys, dkim

keys = {}
for line in open(sys.argv[2]):
    line = line.strip()
    if line:
        name, value = line.split(" ", 1)
        keys[name.rstrip(".").lower()] = value.encode()

def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip(".").lower())

cv, results, why = dkim.arc_verify(open(sys.argv[1], "rb").read(), dnsfunc=dnsfunc)
print("cv=%s %s" % (cv.decode(), why))
for r in results:
    print(r)
sys.exit(0 if cv == dkim.CV_Pass else 1)
