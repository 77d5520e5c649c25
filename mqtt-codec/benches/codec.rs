//! mqtt-codec against mqttbytes 0.6 (the codec rumqtt grew from), on the same bytes and the same packets.
//!
//! Each group holds one packet and both libraries side by side. Decoding frames and decodes one packet from the
//! front of a buffer (`Packet::decode_from` / `v4::read`, `v5::read`); mqttbytes consumes its `BytesMut`, so it
//! gets a fresh clone per iteration, made outside the timed section. Encoding writes into a buffer that is
//! reused between iterations. Results and how to run: `docs/codec-benchmarks.md`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use mqtt_codec::{
    List, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, QosPid, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};
use mqttbytes::{v4, v5};

const MAX: u32 = 1 << 20;
const TOPIC: &str = "sensors/building-7/floor-3/temperature";
const FILTERS: [&str; 3] = ["sensors/+/floor-3/#", "alerts/#", "$SYS/broker/clients/+"];

/// The same packet in both libraries, and the bytes both encode it to.
struct Case {
    name: String,
    version: ProtocolVersion,
    ours: Packet<'static>,
    theirs: Theirs,
    bytes: Vec<u8>,
}

enum Theirs {
    Publish4(v4::Publish),
    Publish5(v5::Publish),
    Subscribe4(v4::Subscribe),
    Subscribe5(v5::Subscribe),
}

impl Theirs {
    fn write(&self, buf: &mut BytesMut) -> usize {
        match self {
            Self::Publish4(p) => p.write(buf),
            Self::Publish5(p) => p.write(buf),
            Self::Subscribe4(p) => p.write(buf),
            Self::Subscribe5(p) => p.write(buf),
        }
        .unwrap_or_else(|e| panic!("mqttbytes encode: {e:?}"))
    }
}

fn encode_ours(p: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut out = vec![0; p.encoded_len(version).unwrap()];
    p.encode(version, &mut out).unwrap();
    out
}

fn publish_case(payload: &'static [u8], version: ProtocolVersion) -> Case {
    let ours = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(PacketId::new(42).unwrap()),
        retain: false,
        topic: TopicName::new(TOPIC).unwrap(),
        properties: Properties::empty(),
        payload,
    });
    let theirs = if version.is_v5() {
        let mut p = v5::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, payload);
        p.pkid = 42;
        Theirs::Publish5(p)
    } else {
        let mut p = v4::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, payload);
        p.pkid = 42;
        Theirs::Publish4(p)
    };
    let label = if version.is_v5() { "v5" } else { "v3.1.1" };
    Case { name: format!("publish-{}B-{label}", payload.len()), version, ours, bytes: Vec::new(), theirs }
}

fn subscribe_case(version: ProtocolVersion) -> Case {
    let subs: &'static [Subscription<'static>] = Box::leak(
        FILTERS
            .iter()
            .map(|f| Subscription {
                filter: TopicFilter::new(f).unwrap(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let ours = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(7).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(subs),
    });
    let theirs = if version.is_v5() {
        let mut p = v5::Subscribe::new_many(
            FILTERS.iter().map(|f| v5::SubscribeFilter::new((*f).to_owned(), mqttbytes::QoS::AtLeastOnce)),
        );
        p.pkid = 7;
        Theirs::Subscribe5(p)
    } else {
        let mut p = v4::Subscribe::new_many(
            FILTERS.iter().map(|f| v4::SubscribeFilter::new((*f).to_owned(), mqttbytes::QoS::AtLeastOnce)),
        );
        p.pkid = 7;
        Theirs::Subscribe4(p)
    };
    let label = if version.is_v5() { "v5" } else { "v3.1.1" };
    Case { name: format!("subscribe-3-filters-{label}"), version, ours, bytes: Vec::new(), theirs }
}

fn cases() -> Vec<Case> {
    let small: &'static [u8] = Box::leak(vec![0x5a; 64].into_boxed_slice());
    let large: &'static [u8] = Box::leak(vec![0xa5; 1024].into_boxed_slice());
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        cases.push(publish_case(small, version));
        cases.push(publish_case(large, version));
        cases.push(subscribe_case(version));
    }
    for case in &mut cases {
        case.bytes = encode_ours(&case.ours, case.version);
        // Both libraries must agree on the wire bytes, or the comparison means nothing.
        let mut theirs = BytesMut::with_capacity(case.bytes.len());
        case.theirs.write(&mut theirs);
        assert_eq!(&theirs[..], &case.bytes[..], "{}: mqttbytes encodes differently", case.name);
    }
    cases
}

fn decode_theirs(case: &Case, stream: &mut BytesMut) -> usize {
    let max = MAX as usize;
    // Touch the decoded packet so neither side can skip work.
    if case.version.is_v5() {
        match v5::read(stream, max).unwrap() {
            v5::Packet::Publish(p) => p.payload.len(),
            v5::Packet::Subscribe(s) => s.filters.len(),
            other => panic!("{other:?}"),
        }
    } else {
        match v4::read(stream, max).unwrap() {
            v4::Packet::Publish(p) => p.payload.len(),
            v4::Packet::Subscribe(s) => s.filters.len(),
            other => panic!("{other:?}"),
        }
    }
}

fn decode_ours(case: &Case, buf: &[u8]) -> usize {
    match Packet::decode_from(buf, case.version, MAX).unwrap() {
        Some((Packet::Publish(p), _)) => p.payload.len(),
        Some((Packet::Subscribe(s), _)) => s.subscriptions.iter().count(),
        other => panic!("{other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    for case in cases() {
        let mut group = c.benchmark_group(&case.name);
        group.throughput(Throughput::Bytes(case.bytes.len() as u64));

        assert_eq!(decode_ours(&case, &case.bytes), decode_theirs(&case, &mut BytesMut::from(&case.bytes[..])));
        group.bench_function(BenchmarkId::new("decode", "mqtt-codec"), |b| {
            b.iter(|| decode_ours(&case, black_box(&case.bytes)))
        });
        let stream = BytesMut::from(&case.bytes[..]);
        group.bench_function(BenchmarkId::new("decode", "mqttbytes"), |b| {
            b.iter_batched(|| stream.clone(), |mut s| decode_theirs(&case, black_box(&mut s)), BatchSize::SmallInput)
        });

        let mut out = vec![0u8; case.bytes.len()];
        group.bench_function(BenchmarkId::new("encode", "mqtt-codec"), |b| {
            b.iter(|| black_box(&case.ours).encode(case.version, black_box(&mut out)).unwrap())
        });
        let mut buf = BytesMut::with_capacity(case.bytes.len());
        group.bench_function(BenchmarkId::new("encode", "mqttbytes"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&case.theirs).write(black_box(&mut buf))
            })
        });
        group.finish();
    }
}

/// `CODEC_BENCH_COUNT="<group>/<op>/<library> <iterations>"` runs one benchmark body that many times and exits,
/// without criterion, for counting instructions under `valgrind --tool=cachegrind`: wall-clock time on a shared
/// machine is noisy, instruction counts are not. `<op>` is `decode`, `encode` or `clone` (the `BytesMut` clone
/// that mqttbytes decoding consumes, to subtract). See `docs/codec-benchmarks.md`.
fn count(spec: &str) {
    let (name, n) = spec.split_once(' ').expect("\"<group>/<op>/<library> <iterations>\"");
    let n: u64 = n.parse().expect("iterations");
    let (group, rest) = name.split_once('/').expect("group/op/library");
    let case = cases().into_iter().find(|c| c.name == group).expect("known group");
    let stream = BytesMut::from(&case.bytes[..]);
    let mut out = vec![0u8; case.bytes.len()];
    let mut buf = BytesMut::with_capacity(case.bytes.len());
    // Picked once, so that the loop holds nothing but the body (and one indirect call).
    let mut body: Box<dyn FnMut() -> usize + '_> = match rest {
        "decode/mqtt-codec" => Box::new(|| decode_ours(&case, black_box(&case.bytes))),
        "decode/mqttbytes" => Box::new(|| decode_theirs(&case, black_box(&mut stream.clone()))),
        "clone/mqttbytes" => Box::new(|| black_box(stream.clone()).len()),
        "encode/mqtt-codec" => Box::new(|| black_box(&case.ours).encode(case.version, black_box(&mut out)).unwrap()),
        "encode/mqttbytes" => Box::new(|| {
            buf.clear();
            black_box(&case.theirs).write(black_box(&mut buf))
        }),
        other => panic!("unknown benchmark {other}"),
    };
    let acc = (0..n).fold(0usize, |acc, _| acc.wrapping_add(body()));
    println!("{name}: {n} iterations ({acc})");
}

criterion_group!(benches, bench);

fn main() {
    match std::env::var("CODEC_BENCH_COUNT") {
        Ok(spec) => count(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
