#!/usr/bin/env python3
"""Hostile-client benchmarks (issue 17): run each against a broker binary and print one JSON line per run.

  wide-subscribe  100,000 retained messages; a latency client publishes to itself at 1,000 msg/s (QoS 0) while,
                  2 s in, another client subscribes to `#` fifty times in one SUBSCRIBE and reads what comes.
                  Figures: the latency client's p50/p99/max before and after the attack starts.
  pre-connect     N connections each send the fixed header of a 2 MiB CONNECT and 32 KiB of its body, then stall.
                  Figure: the broker's RSS growth while they are held.
  slow-consumer   one subscriber that never reads; a publisher offers 1 GB in 64 KiB QoS 0 messages, with the queue
                  limits raised to 2 GiB (and, for a broker that has it, max_message_memory = 64 MiB).
                  Figures: the broker's peak RSS, and the budget's figures when the broker has them.

Usage: bench/hardening.py BROKER_BINARY SCENARIO [--label L] [--budget] [--conns N]

Loopback only. The broker is started with `--listen 127.0.0.1:0 --config FILE` and killed at the end. Not a test:
nothing is asserted, figures go to docs/benchmarks.md.
"""

import argparse
import json
import multiprocessing
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(kind_flags, body):
    return bytes([kind_flags]) + varint(len(body)) + body


def connect_packet(client_id, keep_alive=60):
    body = utf8("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keep_alive) + utf8(client_id)
    return packet(0x10, body)


def subscribe_packet(pid, filters, qos=0):
    body = struct.pack(">H", pid) + b"".join(utf8(f) + bytes([qos]) for f in filters)
    return packet(0x82, body)


def publish_packet(topic, payload, qos=0, retain=False, pid=1):
    body = utf8(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body)


class Client:
    def __init__(self, addr, client_id):
        self.s = socket.create_connection(addr, timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.s.sendall(connect_packet(client_id))
        kind, _ = self.read_packet()
        assert kind >> 4 == 2, "expected CONNACK"

    def read_packet(self):
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + length:
                    kind = self.buf[0]
                    body = self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return kind, body
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk


def start_broker(binary, toml):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(toml)
    cfg.close()
    env = dict(os.environ, RUST_LOG="warn,broker=info", NO_COLOR="1")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", cfg.name], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = p.stderr.readline()
        if "listening" in line and "addr=" in line:
            addr = line.split("addr=")[1].split()[0].strip('",')
            host, port = addr.rsplit(":", 1)
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, (host, int(port))
    p.kill()
    sys.exit("the broker printed no listening line")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def attack(addr, received, read=True):
    """Subscribes to `#` fifty times in one packet and reads everything that comes, counting PUBLISH packets (or,
    with `read` false, reads nothing for 7 s)."""
    c = Client(addr, "wide")
    c.s.sendall(subscribe_packet(2, ["#"] * 50))
    if not read:
        time.sleep(7)
        return
    c.s.settimeout(5)
    data = bytearray()
    try:
        while True:
            chunk = c.s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            # Count whole packets and keep the tail.
            i, n = 0, 0
            while i + 2 <= len(data):
                mult, length, j = 1, 0, i + 1
                while j < len(data):
                    b = data[j]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    j += 1
                    if not b & 0x80:
                        break
                else:
                    break
                if j + length > len(data):
                    break
                if data[i] >> 4 == 3:
                    n += 1
                i = j + length
            del data[:i]
            with received.get_lock():
                received.value += n
    except OSError:
        pass


def wide_subscribe(binary, args):
    broker, addr = start_broker(binary, "[limits]\nmax_retained_messages = 100000\n")
    try:
        filler = Client(addr, "filler")
        batch = bytearray()
        for i in range(100_000):
            batch += publish_packet(f"ret/{i // 1000}/{i}", b"retained-payload", retain=True)
            if len(batch) > 1 << 20:
                filler.s.sendall(batch)
                batch = bytearray()
        filler.s.sendall(batch + publish_packet("ret/sync", b"x", qos=1, retain=True, pid=7))
        while filler.read_packet()[0] >> 4 != 4:
            pass
        lat = Client(addr, "latency")
        lat.s.sendall(subscribe_packet(1, ["lat/t"]))
        lat.read_packet()
        samples = []  # (send time, latency in us)
        stop = threading.Event()

        def receive():
            while not stop.is_set():
                try:
                    kind, body = lat.read_packet()
                except (EOFError, OSError):
                    return
                if kind >> 4 == 3:
                    tlen = struct.unpack(">H", body[:2])[0]
                    sent = struct.unpack(">d", body[2 + tlen:2 + tlen + 8])[0]
                    samples.append((sent, (time.perf_counter() - sent) * 1e6))

        rx = threading.Thread(target=receive, daemon=True)
        rx.start()
        received = multiprocessing.Value("q", 0)

        start = time.perf_counter()
        attack_at = start + 2.0
        attacker = None
        n = 0
        while time.perf_counter() < start + 8.0:
            if attacker is None and time.perf_counter() >= attack_at:
                # Its own process: reading 100,000 messages in Python would starve this one's threads of the GIL.
                attacker = multiprocessing.Process(target=attack, args=(addr, received, not args.stalled), daemon=True)
                attacker.start()
            lat.s.sendall(publish_packet("lat/t", struct.pack(">d", time.perf_counter())))
            n += 1
            time.sleep(max(0.0, start + n / 1000.0 - time.perf_counter()))
        time.sleep(0.5)
        stop.set()
        before = sorted(l for s, l in samples if s < attack_at)
        after = sorted(l for s, l in samples if s >= attack_at)
        return {
            "sent": n, "samples": len(samples),
            "before_p50_us": round(pct(before, 0.5)), "before_p99_us": round(pct(before, 0.99)),
            "before_max_us": round(before[-1]) if before else None,
            "attack_p50_us": round(pct(after, 0.5)), "attack_p99_us": round(pct(after, 0.99)),
            "attack_max_us": round(after[-1]) if after else None,
            "wide_received": received.value,
        }
    finally:
        broker.kill()


def pre_connect(binary, args):
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.conns + 1000, args.conns + 1000))
    broker, addr = start_broker(binary, "[limits]\nmax_connections = 20000\nconnect_timeout_secs = 60\n")
    try:
        time.sleep(0.5)
        rss0 = status_kib(broker.pid, "VmRSS")
        head = bytes([0x10]) + varint(args.announce)
        body = bytes(32 * 1024)
        socks, refused = [], 0
        t0 = time.perf_counter()
        for i in range(args.conns):
            try:
                s = socket.socket()
                s.settimeout(0.2)
                s.connect(addr)
                s.setblocking(False)
                try:
                    s.send(head + body)
                except OSError:
                    pass
                socks.append(s)
            except OSError:
                refused += 1
                s.close()
        took = time.perf_counter() - t0
        time.sleep(3)
        rss = status_kib(broker.pid, "VmRSS")
        hwm = status_kib(broker.pid, "VmHWM")
        # How many the broker still holds open: a closed one reads EOF.
        open_now = 0
        for s in socks:
            try:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                    open_now += 1
            except BlockingIOError:
                open_now += 1
            except OSError:
                pass
        for s in socks:
            s.close()
        return {"conns": args.conns, "announced": args.announce, "connected": len(socks), "connect_failed": refused, "connect_s": round(took, 1),
                "held_open_after_3s": open_now, "rss0_mib": round(rss0 / 1024, 1), "rss_mib": round(rss / 1024, 1),
                "rss_growth_mib": round((rss - rss0) / 1024, 1), "peak_mib": round(hwm / 1024, 1)}
    finally:
        broker.kill()


def slow_consumer(binary, args):
    toml = ("[limits]\nmax_queued_messages = 100000000\nmax_queued_bytes = 2147483648\n"
            "max_packet_size = 131072\n")
    if args.budget:
        toml += "max_message_memory = 67108864\n"
    broker, addr = start_broker(binary, toml)
    try:
        stalled = Client(addr, "stalled")
        stalled.s.sendall(subscribe_packet(1, ["slow/t"]))
        stalled.read_packet()
        stalled.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        pub = Client(addr, "offer")
        msg = publish_packet("slow/t", bytes(64 * 1024))
        total = 1 << 30
        sent = 0
        t0 = time.perf_counter()
        pub.s.settimeout(60)
        while sent < total:
            pub.s.sendall(msg * 16)
            sent += 16 * 64 * 1024
        pub.s.sendall(publish_packet("slow/sync", b"x", qos=1, pid=9))
        while pub.read_packet()[0] >> 4 != 4:
            pass
        took = time.perf_counter() - t0
        time.sleep(1)
        return {"offered_mib": sent >> 20, "offer_s": round(took, 1), "budget_mib": 64 if args.budget else None,
                "rss_mib": round(status_kib(broker.pid, "VmRSS") / 1024, 1),
                "peak_mib": round(status_kib(broker.pid, "VmHWM") / 1024, 1)}
    finally:
        broker.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("scenario", choices=["wide-subscribe", "pre-connect", "slow-consumer"])
    ap.add_argument("--label", default="")
    ap.add_argument("--budget", action="store_true", help="slow-consumer: set max_message_memory = 64 MiB")
    ap.add_argument("--conns", type=int, default=10_000, help="pre-connect: connections")
    ap.add_argument("--announce", type=int, default=2 * 1024 * 1024 - 16,
                    help="pre-connect: Remaining Length the CONNECT announces (default: 2 MiB within max_packet_size)")
    ap.add_argument("--stalled", action="store_true", help="wide-subscribe: the `#` subscriber reads nothing")
    args = ap.parse_args()
    run = {"wide-subscribe": wide_subscribe, "pre-connect": pre_connect, "slow-consumer": slow_consumer}
    result = run[args.scenario](args.binary, args)
    print(json.dumps({"scenario": args.scenario, "label": args.label, **result}))


if __name__ == "__main__":
    main()
