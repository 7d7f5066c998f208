//! Creating and deleting the benchmark topic through the admin API.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::Common;

fn admin(c: &Common) -> Result<AdminClient<DefaultClientContext>> {
    c.client()?.create().context("creating admin client")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Creates the topic fresh: an existing one of that name is deleted first.
pub fn recreate(c: &Common, name: &str, partitions: i32) -> Result<()> {
    let a = admin(c)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = block_on(a.delete_topics(&[name], &opts));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(c.replication_factor),
        );
        let res = block_on(a.create_topics(&[t], &opts)).context("CreateTopics")?;
        match res.first() {
            Some(Ok(_)) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))
                if std::time::Instant::now() < deadline =>
            {
                // Deletion in progress on some brokers.
                std::thread::sleep(Duration::from_millis(200));
            }
            Some(Err((_, e))) => bail!("creating topic {name}: {e}"),
            None => bail!("creating topic {name}: empty answer"),
        }
    }
}

pub fn delete(c: &Common, name: &str) -> Result<()> {
    if c.keep_topic {
        return Ok(());
    }
    let a = admin(c)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    block_on(a.delete_topics(&[name], &opts)).context("DeleteTopics")?;
    Ok(())
}
