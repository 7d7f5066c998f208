//! Idempotent producer at the protocol level: the same batch sent twice is
//! written once and answered with the same offset, also after a kill -9;
//! gaps and stale epochs get Kafka's error codes.

use anyhow::{Result, ensure};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::consume;
use sluice_e2e::wire::{connect, frame, producer_batch, read_response, send};

fn produce(bootstrap: &str, records: Bytes) -> Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("idem")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let mut s = connect(bootstrap)?;
    send(&mut s, &frame(ApiKey::Produce, 9, 1, &req)?)?;
    let (_, r): (i32, ProduceResponse) = read_response(&mut s, ApiKey::Produce, 9)?;
    let p = &r.responses[0].partition_responses[0];
    if p.error_code != 0 {
        eprintln!("produce error {}: {:?}", p.error_code, p.error_message);
    }
    Ok((p.error_code, p.base_offset))
}

fn producer_id(bootstrap: &str) -> Result<(i64, i16)> {
    let mut s = connect(bootstrap)?;
    send(
        &mut s,
        &frame(
            ApiKey::InitProducerId,
            4,
            1,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000),
        )?,
    )?;
    let (_, r): (i32, InitProducerIdResponse) = read_response(&mut s, ApiKey::InitProducerId, 4)?;
    ensure!(r.error_code == 0, "{r:?}");
    Ok((r.producer_id.0, r.producer_epoch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_are_written_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &["--num-partitions", "1"])?;
    let b = broker.bootstrap();
    let (pid, epoch) = producer_id(&b)?;
    let (pid2, _) = producer_id(&b)?;
    ensure!(pid2 != pid, "producer ids must be unique");

    // Create the topic (Metadata auto-creation), then one plain batch.
    let mut s = connect(&b)?;
    let md = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("idem")))),
        ]))
        .with_allow_auto_topic_creation(true);
    send(&mut s, &frame(ApiKey::Metadata, 9, 1, &md)?)?;
    let (_, r): (i32, MetadataResponse) = read_response(&mut s, ApiKey::Metadata, 9)?;
    ensure!(r.topics[0].error_code == 0, "{r:?}");
    ensure!(produce(&b, sluice_e2e::wire::batch(1, 1)?)?.0 == 0);
    let first = producer_batch(3, 10, pid, epoch, 0)?;
    let (e1, o1) = produce(&b, first.clone())?;
    let (e2, o2) = produce(&b, first.clone())?;
    ensure!(
        e1 == 0 && e2 == 0 && o1 == o2,
        "retry answered ({e1},{o1}) then ({e2},{o2})"
    );
    let second = producer_batch(2, 10, pid, epoch, 3)?;
    let (e, o) = produce(&b, second.clone())?;
    ensure!(e == 0 && o == o1 + 3);
    // A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    let (e, _) = produce(&b, producer_batch(1, 10, pid, epoch, 9)?)?;
    ensure!(e == 45, "gap answered {e}");
    // Unknown producer starting mid-sequence: also 45.
    let (e, _) = produce(&b, producer_batch(1, 10, pid2, 0, 7)?)?;
    ensure!(e == 45, "unknown producer answered {e}");

    // The state survives kill -9: the retry is still recognised.
    broker.kill9()?;
    broker.restart()?;
    let (e, o) = produce(&b, second)?;
    ensure!(
        e == 0 && o == o1 + 3,
        "after restart the retry answered ({e},{o})"
    );
    let (e, o) = produce(&b, producer_batch(1, 10, pid, epoch, 5)?)?;
    ensure!(e == 0 && o == o1 + 5, "next in sequence answered ({e},{o})");
    // A newer epoch restarts at 0 and fences the old one (47).
    let (e, _) = produce(&b, producer_batch(1, 10, pid, epoch + 1, 0)?)?;
    ensure!(e == 0);
    let (e, _) = produce(&b, producer_batch(1, 10, pid, epoch, 6)?)?;
    ensure!(e == 47, "stale epoch answered {e}");

    // Exactly 1 + 3 + 2 + 1 + 1 records are in the log.
    let got = tokio::task::spawn_blocking(move || {
        consume(&b, "idem", 1, 8, std::time::Duration::from_secs(20))
    })
    .await??;
    ensure!(got.len() == 8);
    Ok(())
}
