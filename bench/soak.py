#!/usr/bin/env python3
"""Soak run (issue 17): mixed load on one broker for a long time, its RSS sampled, to see that memory stays flat.

Load, all on loopback, all bounded:
  - PUBS publishers (paho-mqtt, MQTT 3.1.1), together RATE msg/s, QoS 0 and 1 alternating, 100-byte payloads, on
    `soak/<publisher>/<0..99>`; one message in 50 is retained (the topic set is bounded, so the retained store is).
  - SUBS persistent subscribers (clean session 0, QoS 1, `soak/#`) that stay online for 5-20 s, go offline for 5-20 s
    (their queue grows in the broker, and in its journal), and come back to drain it.
  - CHURN clean-session clients per second, each connecting with a client id from a pool of 500, subscribing, and
    disconnecting within a second; one in four is cut off without DISCONNECT (its will goes out).
The broker runs with persistence on (fsync "always") in a temporary data directory. Every SAMPLE seconds one line:
elapsed seconds, RSS (KiB), the journal's bytes on disk, messages published and received so far. At the end a summary as JSON.

Usage: bench/soak.py BROKER_BINARY [--minutes 30] [--rate 2000] [--pubs 10] [--subs 20] [--churn 5] [--sample 30]
Not a test: nothing is asserted; the figures go into the issue note and docs/benchmarks.md.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

stop = threading.Event()
lock = threading.Lock()
counts = {"published": 0, "received": 0, "connects": 0, "cuts": 0}


def bump(key, n=1):
    with lock:
        counts[key] += n


def start_broker(binary, data):
    cfg = os.path.join(data, "soak.toml")
    with open(cfg, "w") as f:
        f.write(
            "[persistence]\nenabled = true\npath = \"%s\"\nfsync = \"always\"\n" % os.path.join(data, "journal")
            + "[sessions]\npersistent_session_expiry_secs = 3600\n"
        )
    env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", cfg], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, env=dict(env, RUST_LOG="warn,broker=info"), text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stderr.readline()
        if "listening" in line and "addr=" in line:
            addr = line.split("addr=")[1].split()[0].strip('",')
            host, port = addr.rsplit(":", 1)
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, host, int(port)
    p.kill()
    sys.exit("the broker printed no listening line")


def client(cid, clean=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                    protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(10000)
    return c


def publisher(host, port, n, rate):
    c = client(f"soak-pub-{n}")
    c.connect(host, port, keepalive=30)
    c.loop_start()
    interval = 1.0 / rate
    seq = 0
    next_at = time.time()
    while not stop.is_set():
        seq += 1
        qos = seq % 2
        retain = seq % 50 == 0
        c.publish(f"soak/{n}/{seq % 100}", b"x" * 100, qos=qos, retain=retain)
        bump("published")
        next_at += interval
        delay = next_at - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:
            next_at = time.time()
    c.disconnect()
    c.loop_stop()


def subscriber(host, port, n):
    rng = random.Random(n)
    while not stop.is_set():
        c = client(f"soak-sub-{n}", clean=False)
        c.on_message = lambda *_: bump("received")
        c.on_connect = lambda cl, *_: cl.subscribe("soak/#", qos=1)
        try:
            c.connect(host, port, keepalive=30)
        except OSError:
            time.sleep(1)
            continue
        bump("connects")
        c.loop_start()
        stop.wait(rng.uniform(5, 20))
        c.disconnect()
        c.loop_stop()
        stop.wait(rng.uniform(5, 20))


def churn(host, port, per_sec):
    rng = random.Random(7)
    while not stop.is_set():
        t0 = time.time()
        for _ in range(per_sec):
            c = client(f"soak-churn-{rng.randrange(500)}")
            c.will_set("soak/wills", b"gone", qos=0)
            try:
                c.connect(host, port, keepalive=10)
                c.loop_start()
                c.subscribe("soak/0/#", qos=0)
                time.sleep(0.05)
                if rng.random() < 0.25:
                    c.socket().close()  # cut off: the will goes out
                    bump("cuts")
                else:
                    c.disconnect()
                c.loop_stop()
                bump("connects")
            except (OSError, AttributeError):
                pass
        stop.wait(max(0.0, 1 - (time.time() - t0)))


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--pubs", type=int, default=10)
    ap.add_argument("--subs", type=int, default=20)
    ap.add_argument("--churn", type=int, default=5)
    ap.add_argument("--sample", type=float, default=30)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="soak-")
    broker, host, port = start_broker(args.binary, data)
    threads = [threading.Thread(target=publisher, args=(host, port, n, args.rate / args.pubs)) for n in range(args.pubs)]
    threads += [threading.Thread(target=subscriber, args=(host, port, n)) for n in range(args.subs)]
    threads.append(threading.Thread(target=churn, args=(host, port, args.churn)))
    for t in threads:
        t.daemon = True
        t.start()
    samples = []
    t0 = time.time()
    end = t0 + args.minutes * 60
    try:
        while time.time() < end:
            time.sleep(min(args.sample, max(0.0, end - time.time())))
            if broker.poll() is not None:
                sys.exit(f"the broker exited with {broker.returncode}")
            with lock:
                snap = dict(counts)
            s = {"t": round(time.time() - t0), "rss_kib": rss_kib(broker.pid),
                 "journal_bytes": dir_bytes(os.path.join(data, "journal")), **snap}
            samples.append(s)
            print(json.dumps(s), flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        broker.terminate()
        broker.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    warm = [s["rss_kib"] for s in samples if s["t"] >= 300] or [s["rss_kib"] for s in samples]
    half = len(warm) // 2
    summary = {
        "minutes": args.minutes,
        "published": samples[-1]["published"] if samples else 0,
        "received": samples[-1]["received"] if samples else 0,
        "connects": samples[-1]["connects"] if samples else 0,
        "rss_kib_after_warmup_min": min(warm, default=0),
        "rss_kib_after_warmup_max": max(warm, default=0),
        "rss_kib_first_half_median": sorted(warm[:half])[half // 2] if half else None,
        "rss_kib_second_half_median": sorted(warm[half:])[(len(warm) - half) // 2] if warm[half:] else None,
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
