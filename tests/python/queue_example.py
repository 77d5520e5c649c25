#!/usr/bin/env python3
"""Messages wait for an offline consumer: a persistent session with paho-mqtt 2.x.

1. The consumer connects with a fixed client id and clean_session=False, subscribes to `hello` at QoS 1,
   and disconnects. The broker keeps its session (and the subscription) while it is away.
2. The producer publishes five messages to `hello` at QoS 1. The broker queues them in the consumer's session.
3. The consumer comes back with the same client id. The broker answers "session present" and delivers
   every message that arrived while it was offline, in order.

Run it against a broker:

    python3 -m pip install 'paho-mqtt>=2,<3'
    python3 queue_example.py --host 127.0.0.1 --port 1883

Exit status 0 when every message arrived, 1 otherwise.
"""

import argparse
import sys
import threading

import paho.mqtt.client as mqtt

TIMEOUT = 10  # seconds to wait for any single step


def connect(client_id, host, port, clean_session, on_message=None):
    """Connects a client, starts its network thread, and returns (client, session_present)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    connected = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["code"] = reason_code
        result["session_present"] = flags.session_present
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not connected.wait(TIMEOUT) or result["code"].is_failure:
        sys.exit(f"{client_id}: could not connect: {result.get('code')}")
    return client, result["session_present"]


def disconnect(client):
    client.disconnect()
    client.loop_stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--topic", default="hello")
    parser.add_argument("--client-id", default="hello-consumer")
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    expected = [f"hello {i}" for i in range(1, args.count + 1)]

    received = []
    all_received = threading.Event()

    def on_message(client, userdata, message):
        received.append(message.payload.decode())
        print(f"consumer: received {message.payload.decode()!r} (QoS {message.qos})")
        if len(received) >= len(expected):
            all_received.set()

    # 1. The consumer subscribes with a persistent session, then goes offline.
    consumer, _ = connect(args.client_id, args.host, args.port, clean_session=False, on_message=on_message)
    subscribed = threading.Event()
    consumer.on_subscribe = lambda client, userdata, mid, reason_codes, properties: subscribed.set()
    consumer.subscribe(args.topic, qos=1)
    if not subscribed.wait(TIMEOUT):
        sys.exit("consumer: no SUBACK")
    disconnect(consumer)
    print(f"consumer: subscribed to {args.topic!r} at QoS 1 and went offline")

    # 2. The producer publishes while the consumer is away.
    producer, _ = connect(args.client_id + "-producer", args.host, args.port, clean_session=True)
    for text in expected:
        info = producer.publish(args.topic, text, qos=1)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            sys.exit(f"producer: {text!r} was not acknowledged")
        print(f"producer: published {text!r}")
    disconnect(producer)

    # 3. The consumer comes back: same client id, clean_session=False, no new SUBSCRIBE needed.
    consumer, session_present = connect(
        args.client_id, args.host, args.port, clean_session=False, on_message=on_message
    )
    print(f"consumer: back online, session present = {session_present}")
    all_received.wait(TIMEOUT)
    disconnect(consumer)

    if not session_present:
        sys.exit("FAIL: the broker did not keep the consumer's session")
    if received != expected:
        sys.exit(f"FAIL: expected {expected}, received {received}")
    print(f"OK: the consumer received all {len(expected)} messages published while it was offline")


if __name__ == "__main__":
    main()
