"""Shared subscription load balancing: three members of $share/workers/<topic> split 30 messages, each message
delivered to exactly one member, 10 each (round robin); a plain subscriber sees all 30."""

import time

from v5_common import Client, addr, check, unique

host, port = addr()
topic = unique("v5shared/jobs")
n = 30

members = []
for i in range(3):
    m = Client(unique(f"v5shared-member{i}"))
    m.connect(host, port)
    m.subscribe(f"$share/workers/{topic}")
    members.append(m)
watcher = Client(unique("v5shared-watcher"))
watcher.connect(host, port)
watcher.subscribe(topic)

pub = Client(unique("v5shared-pub"))
pub.connect(host, port)
for i in range(n):
    pub.publish(topic, str(i).encode())

seen = {}
counts = []
for idx, m in enumerate(members):
    got = 0
    while True:
        msg = m.get(timeout=0.5)
        if msg is None:
            break
        key = msg.payload.decode()
        check(key not in seen, f"message {key} delivered to members {seen.get(key)} and {idx}")
        seen[key] = idx
        got += 1
    counts.append(got)
check(len(seen) == n, f"every message reached the group: {len(seen)} of {n}")
check(counts == [10, 10, 10], f"round robin distribution: {counts}")
all_seen = [watcher.get() for _ in range(n)]
check(all(m is not None for m in all_seen), "the plain subscriber got every message")

for c in members + [watcher, pub]:
    c.disconnect()
print(f"OK shared subscription: {n} messages split {counts}", flush=True)
