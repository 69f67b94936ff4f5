//! End-to-end ingest: sketch messages published through the embedded broker, validated and
//! committed to SQLite by the aggregator service, on this machine. Prints a table.
//!
//!   cargo bench -p crowdflow-aggregator --bench ingest
//!
//! Phase 1 (throughput): N messages (default 40,000; CROWDFLOW_BENCH_MESSAGES), 90 % sparse
//! (20 devices) and 10 % dense (5,000 devices, HLL mode), from 200 sensors in 20 zones, as
//! fast as the publisher can send; time until all are stored. Phase 2 (latency): messages at a
//! steady rate; publish-to-stored latency of each, from the stored total polled every 5 ms.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdflow_aggregator::config::AggregatorConfig;
use crowdflow_aggregator::service;
use crowdflow_aggregator::store::SqliteStore;
use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::Window;
use crowdflow_contract::wire::{SaltAnnouncement, SensorId, SketchMessage};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[path = "common/mod.rs"]
mod common;

use common::load::{Stored, rotation_in_an_hour, sketch, windows};

const SENSORS: usize = 200;

fn config_text(port: u16, db: &Path) -> String {
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n{}[counting]\nwindow_s = 10\n",
        db.display(),
        rotation_in_an_hour()
    );
    for z in 0..20 {
        text += &format!("[[zones]]\nid = \"z{z}\"\nname = \"Zone {z}\"\narea_m2 = 1000.0\n");
    }
    for s in 0..SENSORS {
        text += &format!("[[sensors]]\nid = \"s{s}\"\nzone = \"z{}\"\n", s % 20);
    }
    text
}

fn payload(
    sensor: usize,
    window: Window,
    epoch: EpochId,
    fp: SaltFingerprint,
    sketch: &Sketch,
    frames: u64,
) -> Vec<u8> {
    SketchMessage {
        sensor_id: SensorId::new(&format!("s{sensor}")).expect("id"),
        kind: Kind::Wifi,
        window,
        epoch,
        salt_fp: fp,
        sketch: sketch.clone(),
        frames,
        agent_version: "bench".into(),
    }
    .encode()
}

fn main() {
    let n: usize = std::env::var("CROWDFLOW_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("bench.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let config = Arc::new(
        AggregatorConfig::parse(
            &config_text(port, &db),
            &dir.path().join("bench.toml"),
            None,
        )
        .expect("config"),
    );
    // The key the service signs with (made beside the config), to check its announcements.
    let (key, _) = crowdflow_aggregator::salt::key_file::load_or_create(&config.signing_key_file)
        .expect("signing key");
    let trusted = crowdflow_contract::authority_key::TrustedKeys::new(vec![key.public_key()]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let service_store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
        // The bench counts through a connection of its own, as an API reader would read (WAL
        // lets readers run beside the writer); sharing the writer's would slow what we measure.
        let stored = Arc::new(Stored::sqlite(&db));
        let service_config = config.clone();
        tokio::spawn(async move { service::run(service_config, service_store, std::future::pending()).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut options = MqttOptions::new("bench-publisher", "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20).set_inflight(1000);
        let (client, mut events) = AsyncClient::new(options, 20_000);
        client.subscribe("crowdflow/v1/salt", QoS::AtMostOnce).await.expect("subscribe");
        let announcement = loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                break SaltAnnouncement::decode_signed(&p.payload, &trusted).expect("announcement").0;
            }
        };
        let (epoch, fp) = (announcement.salts[0].epoch, announcement.salts[0].salt.fingerprint());
        tokio::spawn(async move { while events.poll().await.is_ok() {} });

        // Phase 1: throughput.
        let per_sensor = n.div_ceil(SENSORS);
        let wins = windows(&config.rotation, epoch, per_sensor + 4000 / SENSORS + 1);
        let (sparse, dense) = (sketch(0, 20), sketch(1_000_000, 5_000));
        let payloads: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| {
                let s = i % SENSORS;
                let sk = if i % 10 == 9 { &dense } else { &sparse };
                (format!("crowdflow/v1/sketch/s{s}"), payload(s, wins[i / SENSORS], epoch, fp, sk, 1))
            })
            .collect();
        let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
        let started = Instant::now();
        // Sensors publish over connections of their own: 8 publishers share the sensors.
        let mut publishers = Vec::new();
        for k in 0..8 {
            let mut options = MqttOptions::new(format!("bench-publisher-{k}"), "127.0.0.1", port);
            options.set_max_packet_size(1 << 20, 1 << 20).set_inflight(500);
            let (c, mut ev) = AsyncClient::new(options, 10_000);
            tokio::spawn(async move { while ev.poll().await.is_ok() {} });
            publishers.push(c);
        }
        for (i, (topic, p)) in payloads.into_iter().enumerate() {
            publishers[(i % SENSORS) % publishers.len()].publish(topic, QoS::AtLeastOnce, false, p).await.expect("publish");
        }
        let published = started.elapsed();
        while stored.count().await < n as u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let total = started.elapsed();

        // Phase 2: latency at a steady rate, one frame per message on fresh windows.
        let rate = 2000.0;
        let count = 4000;
        let base = stored.count().await;
        let poller_stored = stored.clone();
        let poller = tokio::spawn(async move {
            let mut seen = Vec::with_capacity(count);
            let t0 = Instant::now();
            while seen.len() < count && t0.elapsed() < Duration::from_secs(60) {
                let now = poller_stored.count().await - base;
                let at = t0.elapsed();
                while (seen.len() as u64) < now {
                    seen.push(at);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (t0, seen)
        });
        let mut sent = Vec::with_capacity(count);
        let t_start = Instant::now();
        for i in 0..count {
            let due = Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_sub(t_start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let s = i % SENSORS;
            let w = wins[per_sensor + 1 + i / SENSORS];
            sent.push(Instant::now());
            client.publish(format!("crowdflow/v1/sketch/s{s}"), QoS::AtLeastOnce, false, payload(s, w, epoch, fp, &sparse, 1)).await.expect("publish");
        }
        let (t0, seen) = poller.await.expect("poller");
        let mut latencies: Vec<f64> = seen
            .iter()
            .zip(&sent)
            .map(|(stored_at, sent_at)| (t0 + *stored_at).saturating_duration_since(*sent_at).as_secs_f64() * 1e3)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);

        println!("\n## Ingest through the embedded broker into SQLite (this machine)\n");
        println!("| measure | value |");
        println!("|---|---|");
        println!("| messages (90 % sparse 20 devices, 10 % dense 5,000) | {n} ({:.1} MB) |", bytes as f64 / 1e6);
        println!("| publish time | {:.2} s |", published.as_secs_f64());
        println!("| all stored after | {:.2} s |", total.as_secs_f64());
        println!("| end-to-end throughput | {:.0} messages/s |", n as f64 / total.as_secs_f64());
        println!("| latency at {rate:.0} msg/s, p50 / p99 / max ({} samples) | {:.0} / {:.0} / {:.0} ms |", latencies.len(), pct(0.5), pct(0.99), pct(1.0));
    });
}
