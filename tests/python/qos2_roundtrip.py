#!/usr/bin/env python3
"""QoS 2 round trip with paho-mqtt 2.x, for MQTT 3.1 and 3.1.1.

A subscriber at QoS 2 and a publisher at QoS 2: every message completes its PUBLISH/PUBREC/PUBREL/PUBCOMP flow on
both sides and arrives exactly once, at QoS 2, in order.

    qos2_roundtrip.py HOST PORT TOPIC_PREFIX

Exit status 0 on success; a message on stderr and status 1 otherwise.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt

TIMEOUT = 10
COUNT = 10


def client(client_id, protocol, host, port):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=protocol)
    connected = threading.Event()
    codes = []

    def on_connect(client, userdata, flags, reason_code, properties):
        codes.append(reason_code)
        connected.set()

    c.on_connect = on_connect
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not connected.wait(TIMEOUT) or codes[0].is_failure:
        sys.exit(f"{client_id}: connect failed: {codes}")
    return c


def round_trip(host, port, topic, protocol, name):
    received = []
    done = threading.Event()
    subscribed = threading.Event()
    granted = []

    def on_message(client, userdata, message):
        received.append((message.payload.decode(), message.qos))
        if len(received) >= COUNT:
            done.set()

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        granted.extend(rc.value for rc in reason_codes)
        subscribed.set()

    sub = client(f"paho-sub-{name}", protocol, host, port)
    sub.on_message = on_message
    sub.on_subscribe = on_subscribe
    sub.subscribe(topic, qos=2)
    if not subscribed.wait(TIMEOUT) or granted != [2]:
        sys.exit(f"{name}: SUBACK granted {granted}, expected [2]")

    pub = client(f"paho-pub-{name}", protocol, host, port)
    for i in range(COUNT):
        info = pub.publish(topic, f"m{i}", qos=2)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            sys.exit(f"{name}: QoS 2 publish {i} did not complete (no PUBCOMP)")
    done.wait(TIMEOUT)
    time.sleep(0.3)  # room for a duplicate to show up
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    expected = [(f"m{i}", 2) for i in range(COUNT)]
    if received != expected:
        sys.exit(f"{name}: expected {expected}, received {received}")
    print(f"{name}: {COUNT} QoS 2 messages, each received exactly once")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    round_trip(host, port, f"{prefix}/v311", mqtt.MQTTv311, "mqttv311")
    round_trip(host, port, f"{prefix}/v31", mqtt.MQTTv31, "mqttv31")


if __name__ == "__main__":
    main()
