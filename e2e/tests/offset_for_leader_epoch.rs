//! OffsetForLeaderEpoch (23) against a broker process, at the protocol
//! level: where an epoch ends, epoch fencing, unknown partitions.

use anyhow::{Result, ensure};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{produce_n, producer};
use sluice_e2e::wire;

fn ask(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    current: i32,
    epoch: i32,
) -> Result<(i16, i32, i64)> {
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ]),
        ]);
    let mut s = wire::connect(bootstrap)?;
    wire::send(
        &mut s,
        &wire::frame(ApiKey::OffsetForLeaderEpoch, 4, 7, &req)?,
    )?;
    let (corr, resp): (i32, OffsetForLeaderEpochResponse) =
        wire::read_response(&mut s, ApiKey::OffsetForLeaderEpoch, 4)?;
    ensure!(corr == 7);
    let p = &resp.topics[0].partitions[0];
    Ok((p.error_code, p.leader_epoch, p.end_offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_end_offsets_and_fencing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&dir.path().join("data"), &[])?;
    let b = broker.bootstrap();
    let p = producer(&b, &[("acks", "all")])?;
    let offsets = produce_n(&p, "epochs", 0, 120).await?;
    ensure!(offsets.last() == Some(&119));
    let b2 = b.clone();
    let answers = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok([
            ask(&b2, "epochs", 0, 0, 0)?,
            ask(&b2, "epochs", 0, -1, 7)?,
            ask(&b2, "epochs", 0, 3, 0)?,
            ask(&b2, "epochs", 9, -1, 0)?,
            ask(&b2, "nope", 0, -1, 0)?,
        ])
    })
    .await??;
    // The current epoch (0) ends at the log end.
    ensure!(answers[0] == (0, 0, 120), "{:?}", answers[0]);
    // A later epoch than any written: the latest one's end.
    ensure!(answers[1] == (0, 0, 120), "{:?}", answers[1]);
    // The client knows a newer leader epoch than this broker: refused.
    ensure!(answers[2].0 == 75, "UNKNOWN_LEADER_EPOCH: {:?}", answers[2]);
    // Unknown partition and topic.
    ensure!(answers[3].0 == 3 && answers[4].0 == 3, "{answers:?}");
    Ok(())
}
