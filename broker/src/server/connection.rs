//! One client connection: read a frame, handle it, write the response, in
//! order. Like Kafka, a connection has one request in progress at a time;
//! other connections are served concurrently by their own tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::handlers;
use crate::protocol::{FrameError, read_frame};

pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    broker.metrics.connections.inc();
    let result = run(&broker, stream, peer).await;
    broker.metrics.connections.dec();
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(reason) => tracing::info!(%peer, %reason, "closed connection"),
    }
}

async fn run(broker: &Arc<Broker>, stream: TcpStream, peer: SocketAddr) -> Result<(), String> {
    let max = broker.config.socket_request_max_bytes.max(0) as usize;
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let mut out = Vec::new();
    loop {
        let frame = tokio::select! {
            // On shutdown, stop taking new requests; the one in progress
            // (below) always completes.
            _ = broker.shutdown.cancelled() => break,
            f = read_frame(&mut reader, max) => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Io(e)) => return Err(format!("read error: {e}")),
            Err(e) => {
                broker.metrics.malformed_requests.inc();
                return Err(e.to_string());
            }
        };
        out.clear();
        // The fetch memory this response holds is released once written.
        let _held = handlers::handle(broker, frame, &mut out, peer).await?;
        for chunk in out.drain(..) {
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| format!("write error: {e}"))?;
        }
        // Pipelined requests already buffered are served before flushing,
        // so their responses go out in one write.
        if reader.buffer().is_empty() {
            writer
                .flush()
                .await
                .map_err(|e| format!("write error: {e}"))?;
        }
    }
    writer
        .flush()
        .await
        .map_err(|e| format!("write error: {e}"))
}
