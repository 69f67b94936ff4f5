//! Floods against one aggregator at once (#14), all to 127.0.0.1, while a sensor's agent goes
//! on publishing: 200 Server-Sent-Event subscribers (beyond the cap of 128 a 503 with
//! Retry-After), 300 connections that trickle half a request head, 1,000 idle connections, and
//! 240 MB of 100 KB MQTT payloads (half on a topic nobody subscribes to, half as garbage on
//! the sensor's own sketch topic; under the broker's 128 KiB packet limit, so all of it goes
//! through the broker). During it a normal API request still gets its answer once the
//! header-read timeout frees the held connections; after it every one of the sensor's devices
//! is counted, and the aggregator's memory grew by a bounded amount.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crowdflow_aggregator::store::SqliteStore;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::{free_port, http_get, run_binary, runtime, stored, wait_for_port};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// Resident memory of process `pid` in MB (Linux /proc).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Opens a stream subscription; returns the connection (held open) and its status head.
fn subscribe(http: u16) -> Option<(TcpStream, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", http)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).ok()?;
    Some((stream, String::from_utf8_lossy(&head[..n]).into_owned()))
}

/// Connections that send `prefix` and then nothing.
fn hold(http: u16, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", http)).ok()?;
            let _ = s.write_all(prefix);
            Some(s)
        })
        .collect()
}

/// Whether the health endpoint answers (with the broker link up) within `within`.
fn answers_within(http: u16, within: Duration) -> Option<Duration> {
    let asked = Instant::now();
    while asked.elapsed() < within {
        if http_get(http, "/api/v1/health").is_ok_and(|b| b.contains("\"broker_connected\":true")) {
            return Some(asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn floods_of_streams_slow_heads_idle_connections_and_payloads_leave_the_service_standing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mqtt, http) = (free_port(), free_port());
    let db = dir.path().join("crowdflow.db");
    let pcap = dir.path().join("crowd.pcap");
    write_probes(&pcap, &gate::probes([0x0e, 0xf1, 0x00], 300_000));
    let config = gate::aggregator_config(
        &dir.path().join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nanonymous_role = \"viewer\"\n\
             header_read_timeout_s = 2\nidle_timeout_s = 2\n\
             [broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5",
            db.display()
        ),
    );
    let mut aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
    assert!(wait_for_port(mqtt, Duration::from_secs(15)), "broker up");
    assert!(
        answers_within(http, Duration::from_secs(15)).is_some(),
        "up"
    );
    let before = rss_mb(aggregator.child.id());
    let agent_cfg = gate::agent_config(dir.path(), mqtt, &pcap);
    let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");

    // 200 subscribers: the cap (http.max_streams, 128) holds, the rest are told to come back.
    let streams: Vec<(TcpStream, String)> = (0..200).filter_map(|_| subscribe(http)).collect();
    let open = streams
        .iter()
        .filter(|(_, h)| h.starts_with("HTTP/1.1 200"))
        .count();
    let refused = streams
        .iter()
        .filter(|(_, h)| {
            h.starts_with("HTTP/1.1 503") && h.to_ascii_lowercase().contains("retry-after")
        })
        .count();
    assert!(open <= 128, "{open} streams beyond the cap of 128");
    assert!(
        open + refused >= 190,
        "{open} open, {refused} refused of 200"
    );
    drop(streams);

    let slow = hold(
        http,
        300,
        b"GET /api/v1/zones HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    );
    let idle = hold(http, 1000, b"");
    let runtime = runtime();
    let slowest = runtime.block_on(async {
        let mut options = MqttOptions::new("flooder", "127.0.0.1", mqtt);
        options
            .set_max_packet_size(2 << 20, 2 << 20)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 16);
        // Should the broker drop the flooder, it reconnects and goes on.
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        let payload = vec![b'x'; 100 * 1024];
        let mut slowest = Duration::ZERO;
        for i in 0..2400 {
            let topic = if i % 2 == 0 {
                "flood/nobody-listens"
            } else {
                "crowdflow/v1/sketch/gate-1"
            };
            let _ = client
                .publish(topic, QoS::AtMostOnce, false, payload.clone())
                .await;
            if i % 600 == 0 {
                // The held connections are closed by the header-read timeout (2 s here).
                let took = answers_within(http, Duration::from_secs(20));
                slowest = slowest.max(took.expect("the API answers during the flood"));
            }
        }
        slowest
    });
    drop((slow, idle));
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
    let frames = runtime.block_on(stored::wait_for_frames(
        &store,
        DEVICES,
        Duration::from_secs(90),
    ));
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_mb(aggregator.child.id());
    let metrics = http_get(http, "/metrics").unwrap_or_default();
    agent.terminate(Duration::from_secs(5));
    aggregator.terminate(Duration::from_secs(5));
    eprintln!(
        "streams {open} open / {refused} refused of 200; aggregator RSS {before:.0} MB before, \
         {after:.0} MB after; slowest health answer during the floods {slowest:?}"
    );
    assert_eq!(frames, DEVICES, "every device of the sensor is counted");
    assert!(
        after - before < 150.0,
        "memory bounded: {before:.0} -> {after:.0} MB"
    );
    assert!(
        metrics.contains("crowdflow_http_streams_refused_total"),
        "refused streams are counted"
    );
}
