"""Session expiry across a reconnect: a session with Session Expiry Interval 60 keeps its subscription and queued
messages while offline; one with 1 s is gone after 2.5 s."""

import time

from v5_common import Client, addr, check, unique

host, port = addr()
topic = unique("v5exp/t")

keep_id = unique("v5exp-keep")
short_id = unique("v5exp-short")
for cid, expiry in [(keep_id, 60), (short_id, 1)]:
    c = Client(cid, clean_start=False, expiry=expiry)
    present, _ = c.connect(host, port)
    check(not present, f"{cid}: new session")
    c.subscribe(topic)
    c.disconnect()

pub = Client(unique("v5exp-pub"))
pub.connect(host, port)
for i in range(2):
    pub.publish(topic, f"queued {i}".encode())
pub.disconnect()

time.sleep(2.5)

keep = Client(keep_id, clean_start=False, expiry=60)
present, _ = keep.connect(host, port)
check(present, "the 60 s session is resumed (session present)")
got = [keep.get() for _ in range(2)]
check(all(m is not None for m in got), f"queued messages delivered: {got}")
check([m.payload for m in got] == [b"queued 0", b"queued 1"], f"in order: {[m.payload for m in got]}")
keep.disconnect()

short = Client(short_id, clean_start=False, expiry=1)
present, _ = short.connect(host, port)
check(not present, "the 1 s session expired (no session present)")
check(short.get(timeout=0.5) is None, "nothing queued for an expired session")
short.disconnect()
print("OK session expiry: 60 s session resumed with 2 queued messages, 1 s session expired", flush=True)
