"""Shared helpers for the MQTT 5 paho-mqtt 2.x scenarios (run from tests/tests/mqtt5/interop.rs).

Every scenario takes the broker's host and port as arguments, prints one `OK ...` line and exits 0, or exits 1 with
the reason. Every wait has a timeout.
"""

import os
import queue
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 5.0


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def unique(prefix):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def addr():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} HOST PORT")
    return sys.argv[1], int(sys.argv[2])


def props(kind, **values):
    p = Properties(kind)
    for k, v in values.items():
        setattr(p, k, v)
    return p


class Client:
    """A paho MQTT 5 client whose callbacks feed queues."""

    def __init__(self, client_id, clean_start=True, expiry=None, will=None, keepalive=30):
        self.id = client_id
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, p: self.connacks.put((flags.session_present, rc, p))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(codes)
        if will is not None:
            topic, payload, will_props = will
            self.c.will_set(topic, payload, qos=1, properties=will_props)
        cp = props(PacketTypes.CONNECT)
        if expiry is not None:
            cp.SessionExpiryInterval = expiry
        self.clean_start = clean_start
        self.connect_props = cp
        self.keepalive = keepalive

    def connect(self, host, port):
        self.c.connect(host, port, keepalive=self.keepalive, clean_start=self.clean_start,
                       properties=self.connect_props)
        self.c.loop_start()
        try:
            present, rc, p = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            fail(f"{self.id}: no CONNACK")
        check(not rc.is_failure, f"{self.id}: CONNACK {rc}")
        return present, p

    def subscribe(self, topic, qos=1):
        self.c.subscribe(topic, qos=qos)
        try:
            codes = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            fail(f"{self.id}: no SUBACK for {topic}")
        check(all(not c.is_failure for c in codes), f"{self.id}: SUBACK {codes}")

    def publish(self, topic, payload, qos=1, properties=None):
        info = self.c.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(timeout=WAIT)
        check(info.is_published(), f"{self.id}: publish to {topic} not acknowledged")

    def get(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def kill(self):
        """Drops the connection without DISCONNECT."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


def elapsed(t0):
    return time.monotonic() - t0
