"""Will Delay Interval: a will with a 2 s delay is not sent at once when the client vanishes, then arrives with its
properties; a client that reconnects within the delay cancels its will."""

import time

from v5_common import Client, PacketTypes, addr, check, elapsed, props, unique

host, port = addr()
topic = unique("v5will/status")

watcher = Client(unique("v5will-watcher"))
watcher.connect(host, port)
watcher.subscribe(topic)

will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2, ContentType="text/plain")
will_props.UserProperty = [("reason", "vanished")]
dying = Client(unique("v5will-dying"), clean_start=False, expiry=30, will=(topic, b"offline", will_props))
dying.connect(host, port)
dying.kill()
t0 = time.monotonic()
check(watcher.get(timeout=1.0) is None, "the will waits for its delay")
msg = watcher.get(timeout=4.0)
check(msg is not None, "the will arrives after its delay")
waited = elapsed(t0)
check(1.5 <= waited <= 4.5, f"after about 2 s, got {waited:.2f}")
check(msg.payload == b"offline", f"payload {msg.payload!r}")
check(msg.properties.ContentType == "text/plain", f"will Content Type forwarded: {msg.properties}")
check(msg.properties.UserProperty == [("reason", "vanished")], f"will User Property forwarded: {msg.properties}")

back_id = unique("v5will-back")
will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
back = Client(back_id, clean_start=False, expiry=30, will=(topic, b"should not appear", will_props))
back.connect(host, port)
back.kill()
time.sleep(0.3)
again = Client(back_id, clean_start=False, expiry=30)
present, _ = again.connect(host, port)
check(present, "resumed within the delay")
check(watcher.get(timeout=3.0) is None, "a reconnect within the delay cancels the will")
again.disconnect()
watcher.disconnect()
print(f"OK will delay: will after {waited:.2f} s with its properties; cancelled by a reconnect", flush=True)
