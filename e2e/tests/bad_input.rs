//! Bad input: malformed, oversized and hostile requests. None may panic the
//! broker, block other connections, or reach the log. A real client
//! (librdkafka) keeps producing on its own connection throughout, and
//! every one of its records must be acknowledged.

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{consume, producer};
use sluice_e2e::wire::{self, closed_by_peer, connect, frame, read_response, send};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

fn produce_error(bootstrap: &str, topic: &str, records: Bytes) -> Result<i16> {
    let mut s = connect(bootstrap)?;
    send(
        &mut s,
        &frame(ApiKey::Produce, 9, 1, &produce_request(topic, records))?,
    )?;
    let (_, resp): (i32, ProduceResponse) = read_response(&mut s, ApiKey::Produce, 9)?;
    Ok(resp.responses[0].partition_responses[0].error_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_while_a_healthy_client_keeps_producing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--message-max-bytes", "10000"])?;
    let bootstrap = broker.bootstrap();

    // A healthy client producing the whole time, on its own connection.
    let healthy = producer(
        &bootstrap,
        &[("acks", "all"), ("message.timeout.ms", "10000")],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let bg = {
        let (stop, acked, failed) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&failed));
        let healthy = healthy.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 100_000 && Instant::now() < deadline {
                let v = format!("healthy-{i}");
                let r = healthy
                    .send(
                        FutureRecord::<(), _>::to("healthy").payload(&v),
                        Duration::from_secs(10),
                    )
                    .await;
                match r {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The victim topic gets exactly one valid batch of 3 records.
    let mut admin = connect(&bootstrap)?;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name("victim"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
    send(&mut admin, &frame(ApiKey::CreateTopics, 5, 1, &create)?)?;
    let (_, r): (i32, CreateTopicsResponse) = read_response(&mut admin, ApiKey::CreateTopics, 5)?;
    ensure!(
        r.topics[0].error_code == 0,
        "create victim: {:?}",
        r.topics[0]
    );
    ensure!(produce_error(&bootstrap, "victim", wire::batch(3, 10)?)? == 0);

    let blocking = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || -> Result<()> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x51u64);
            // 1. Random bytes, raw and inside a plausible frame.
            for round in 0..50 {
                let mut s = connect(&bootstrap)?;
                let n = rng.random_range(1..4096);
                let mut junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                if round % 2 == 0 {
                    // A correct size prefix around random content, starting
                    // with a served API key so the body decoder runs.
                    let keys = [0i16, 1, 2, 3, 18, 19, 20, 32, 60];
                    let key = keys[round / 2 % keys.len()];
                    junk[..2].copy_from_slice(&key.to_be_bytes());
                    let mut f = (junk.len() as i32).to_be_bytes().to_vec();
                    f.extend_from_slice(&junk);
                    junk = f;
                }
                let _ = s.write_all(&junk);
                let _ = s.shutdown(Shutdown::Write);
                ensure!(
                    wire::eventually_closed(&mut s),
                    "round {round}: connection left open after junk"
                );
            }
            // 2. A frame header claiming 2 GiB: closed at once.
            let mut s = connect(&bootstrap)?;
            send(&mut s, &[0x7f, 0xff, 0xff, 0xff])?;
            ensure!(closed_by_peer(&mut s), "2 GiB frame not refused");
            // 3. A truncated frame: the client goes away mid-frame.
            let mut s = connect(&bootstrap)?;
            send(&mut s, &[0, 0, 0, 100, 0, 18, 0, 3])?;
            s.shutdown(Shutdown::Write)?;
            ensure!(closed_by_peer(&mut s), "truncated frame not closed");
            // 4. Unknown API key.
            let mut s = connect(&bootstrap)?;
            let mut f = frame(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default())?;
            f[4..6].copy_from_slice(&999i16.to_be_bytes());
            send(&mut s, &f)?;
            ensure!(closed_by_peer(&mut s), "unknown API key not refused");
            // 5. Unsupported versions: Metadata v99 closes; ApiVersions v99
            // gets the v0 fallback with UNSUPPORTED_VERSION (35).
            let mut s = connect(&bootstrap)?;
            let mut f = frame(ApiKey::Metadata, 12, 9, &MetadataRequest::default())?;
            f[6..8].copy_from_slice(&99i16.to_be_bytes());
            send(&mut s, &f)?;
            ensure!(closed_by_peer(&mut s), "Metadata v99 not refused");
            let mut s = connect(&bootstrap)?;
            let mut f = frame(ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default())?;
            f[6..8].copy_from_slice(&99i16.to_be_bytes());
            send(&mut s, &f)?;
            let (corr, r): (i32, ApiVersionsResponse) =
                read_response(&mut s, ApiKey::ApiVersions, 0)?;
            ensure!(
                corr == 42 && r.error_code == 35,
                "ApiVersions v99 answer: corr {corr}, {r:?}"
            );
            ensure!(
                r.api_keys
                    .iter()
                    .any(|k| k.api_key == 18 && k.max_version == 4)
            );
            // Produce v2 (message format v1) is advertised but refused.
            let mut s = connect(&bootstrap)?;
            let mut f = frame(
                ApiKey::Produce,
                3,
                9,
                &produce_request("victim", wire::batch(1, 1)?),
            )?;
            f[6..8].copy_from_slice(&2i16.to_be_bytes());
            send(&mut s, &f)?;
            ensure!(closed_by_peer(&mut s), "Produce v2 not refused");
            // 6. A batch with a bad CRC: CORRUPT_MESSAGE (2).
            let mut bad = wire::batch(3, 10)?.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            ensure!(
                produce_error(&bootstrap, "victim", Bytes::from(bad))? == 2,
                "bad CRC"
            );
            // A truncated batch inside a well-formed request: CORRUPT_MESSAGE.
            let good = wire::batch(3, 10)?;
            ensure!(
                produce_error(&bootstrap, "victim", good.slice(..good.len() - 5))? == 2,
                "short batch"
            );
            // 7. A batch over message.max.bytes: MESSAGE_TOO_LARGE (10).
            ensure!(
                produce_error(&bootstrap, "victim", wire::batch(4, 5000)?)? == 10,
                "oversized batch"
            );
            // 8. Invalid topic names: INVALID_TOPIC_EXCEPTION (17).
            let mut s = connect(&bootstrap)?;
            let create = CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(name("bad/name"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(name(&"x".repeat(250)))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]);
            send(&mut s, &frame(ApiKey::CreateTopics, 5, 1, &create)?)?;
            let (_, r): (i32, CreateTopicsResponse) =
                read_response(&mut s, ApiKey::CreateTopics, 5)?;
            ensure!(r.topics.iter().all(|t| t.error_code == 17), "{r:?}");
            let md = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("bad name"))),
                ]))
                .with_allow_auto_topic_creation(true);
            send(&mut s, &frame(ApiKey::Metadata, 9, 2, &md)?)?;
            let (_, r): (i32, MetadataResponse) = read_response(&mut s, ApiKey::Metadata, 9)?;
            ensure!(r.topics[0].error_code == 17, "{r:?}");
            ensure!(
                produce_error(&bootstrap, "bad/name", wire::batch(1, 1)?)? == 3,
                "produce to invalid name"
            );
            // 9. A client that claims a frame and stalls: others go on
            // (the healthy producer is checked below); it is simply idle.
            let mut stall = connect(&bootstrap)?;
            send(&mut stall, &[0, 0, 0x10, 0, 0, 3])?;
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        }
    });
    blocking.await??;

    stop.store(true, Ordering::Relaxed);
    bg.await?;
    ensure!(
        failed.load(Ordering::Relaxed) == 0,
        "the healthy producer saw failures"
    );
    ensure!(
        acked.load(Ordering::Relaxed) > 0,
        "the healthy producer made no progress"
    );

    // Only the one valid batch reached the victim's log.
    let b2 = bootstrap.clone();
    let got =
        tokio::task::spawn_blocking(move || consume(&b2, "victim", 1, 3, Duration::from_secs(20)))
            .await??;
    ensure!(
        got.len() == 3
            && got
                .iter()
                .all(|r| r.value.as_deref() == Some(&b"xxxxxxxxxx"[..]))
    );
    let mut broker = broker;
    ensure!(broker.is_running(), "broker died: {}", broker.log());
    ensure!(
        !broker.log().contains("panicked"),
        "broker panicked: {}",
        broker.log()
    );
    let metrics = broker.metrics()?;
    ensure!(
        metrics.contains("sluice_network_malformed_requests_total"),
        "{metrics}"
    );
    println!(
        "healthy producer: {} acknowledged during the hostile round",
        acked.load(Ordering::Relaxed)
    );
    Ok(())
}
