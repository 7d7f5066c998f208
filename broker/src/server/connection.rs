//! One client connection: read a frame, handle it, write the response, in
//! order. Like Kafka, a connection handles one request at a time, with one
//! exception: produce requests are pipelined (each appended as it arrives,
//! answered in order once replicated; decision 0021). Other connections
//! are served concurrently by their own tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::broker::Broker;
use crate::handlers;
use crate::protocol::{Close, FrameError, FrameReader};

pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    broker.metrics.connections.inc();
    let result = run(&broker, stream, peer).await;
    broker.metrics.connections.dec();
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(reason) => tracing::info!(%peer, %reason, "closed connection"),
    }
}

/// How many produce answers a connection may have waiting for their
/// in-sync replicas at once; while that many wait, the next request is not
/// read. librdkafka keeps up to five requests in flight per connection with
/// idempotence, up to a million without.
const MAX_WAITING: usize = 16;

async fn run(broker: &Arc<Broker>, stream: TcpStream, peer: SocketAddr) -> Result<(), Close> {
    let max = broker.config.socket_request_max_bytes.max(0) as usize;
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let mut frames = FrameReader::default();
    // acks=all produce answers waiting for replication, in request order.
    let mut waiting: FuturesOrdered<handlers::Later> = FuturesOrdered::new();
    let mut reading = true;
    let mut out = Vec::new();
    loop {
        let frame = tokio::select! {
            biased;
            Some(done) = waiting.next(), if !waiting.is_empty() => {
                write(&mut writer, done?).await?;
                if reader.buffer().is_empty() {
                    flush(&mut writer).await?;
                }
                continue;
            }
            // On shutdown, stop taking new requests; those in progress
            // (below, and the waiting answers) always complete.
            _ = broker.shutdown.cancelled(), if reading => {
                reading = false;
                continue;
            }
            f = frames.next(&mut reader, max), if reading && waiting.len() < MAX_WAITING => f,
            else => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => {
                reading = false;
                continue;
            }
            Err(e @ FrameError::Io(_)) => return Err(e.into()),
            Err(e) => {
                broker.metrics.malformed_requests.inc();
                return Err(e.into());
            }
        };
        // Produce requests are pipelined: each is appended as it arrives,
        // and its answer, once the in-sync replicas have the writes, goes
        // out after the answers before it. Any other request is handled
        // only once the answers before it are out, as Kafka handles a
        // connection's requests one at a time.
        if !waiting.is_empty() && !handlers::is_produce(&frame) {
            while let Some(done) = waiting.next().await {
                write(&mut writer, done?).await?;
            }
        }
        out.clear();
        match handlers::handle(broker, frame, &mut out, peer).await? {
            handlers::Reply::Later(answer) => waiting.push_back(answer),
            handlers::Reply::Now(_held) if waiting.is_empty() => {
                // The fetch memory this response holds is released once
                // written.
                write(&mut writer, std::mem::take(&mut out)).await?;
                // Pipelined requests already buffered are served before
                // flushing, so their responses go out in one write.
                if reader.buffer().is_empty() {
                    flush(&mut writer).await?;
                }
            }
            // A produce that did not wait (acks=1), behind ones that do.
            handlers::Reply::Now(_) => {
                let chunks = std::mem::take(&mut out);
                waiting.push_back(Box::pin(async move { Ok(chunks) }));
            }
        }
    }
    flush(&mut writer).await
}

async fn write(writer: &mut BufWriter<OwnedWriteHalf>, chunks: Vec<Bytes>) -> Result<(), Close> {
    for chunk in chunks {
        writer.write_all(&chunk).await.map_err(Close::Write)?;
    }
    Ok(())
}

async fn flush(writer: &mut BufWriter<OwnedWriteHalf>) -> Result<(), Close> {
    writer.flush().await.map_err(Close::Write)
}
