//! One client connection: read a frame, handle it, write the response, in
//! order. Like Kafka, a connection handles one request at a time, with one
//! exception: produce requests are pipelined (each appended as it arrives,
//! answered in order once replicated; decision 0021). Other connections
//! are served concurrently by their own tasks.

use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::handlers;
use crate::protocol::{Close, FrameError, FrameReader};
use crate::server::Session;

/// The read buffer under a TLS stream.
const TLS_READ_BUFFER: usize = 256 * 1024;

/// How long a TLS client has to complete its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest frame read before a SASL client authenticated (Kafka's
/// `sasl.server.max.receive.size`): a token is small.
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

pub async fn serve(broker: Arc<Broker>, stream: TcpStream, mut session: Session) {
    let peer = session.peer;
    broker.metrics.connections.inc();
    let result = if session.protocol.tls() {
        match accept_tls(&broker, stream, &mut session).await {
            Ok(tls) => {
                let (rd, wr) = tokio::io::split(tls);
                run(&broker, rd, wr, &mut session).await
            }
            Err(reason) => Err(reason),
        }
    } else {
        let (rd, wr) = stream.into_split();
        run(&broker, rd, wr, &mut session).await
    };
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

/// The TLS handshake; on an SSL listener the client certificate (if any)
/// names the principal.
async fn accept_tls(
    broker: &Broker,
    stream: TcpStream,
    session: &mut Session,
) -> Result<tokio_rustls::server::TlsStream<tokio::io::BufReader<TcpStream>>, Close> {
    let Some(tls) = broker.security.tls.as_ref() else {
        return Err(Close::Auth("TLS listener without TLS settings".into()));
    };
    let failed = |reason: String| {
        broker
            .metrics
            .authentication_failures
            .with_label_values(&[&session.listener, "TLS"])
            .inc();
        tracing::warn!(peer = %session.peer, listener = %session.listener, %reason, "failed authentication (TLS handshake)");
        Close::Auth(format!("TLS handshake failed: {reason}"))
    };
    // rustls takes TLS records from the socket 4 KiB at a time: read
    // through a buffer, or a large produce costs a system call per 4 KiB.
    let stream = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
    let stream = match tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        tls.acceptor(&session.listener).accept(stream),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(_) => {
            return Err(failed(format!(
                "not completed within {TLS_HANDSHAKE_TIMEOUT:?}"
            )));
        }
    };
    if !session.protocol.sasl() {
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        session.principal = tls.principal(cert);
        tracing::debug!(peer = %session.peer, listener = %session.listener, principal = %session.principal, "TLS client authenticated");
    }
    broker
        .metrics
        .authentications
        .with_label_values(&[&session.listener, "TLS"])
        .inc();
    Ok(stream)
}

async fn run<R, W>(broker: &Arc<Broker>, rd: R, wr: W, session: &mut Session) -> Result<(), Close>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_request = broker.config.socket_request_max_bytes.max(0) as usize;
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
            f = frames.next(&mut reader, if session.authenticated() {
                max_request
            } else {
                MAX_UNAUTHENTICATED_FRAME.min(max_request)
            }), if reading && waiting.len() < MAX_WAITING => f,
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
        match handlers::handle(broker, frame, &mut out, session).await? {
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
                if let Some(reason) = session.close_after_reply.take() {
                    flush(&mut writer).await?;
                    return Err(Close::Auth(reason));
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

async fn write<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    chunks: Vec<Bytes>,
) -> Result<(), Close> {
    for chunk in chunks {
        writer.write_all(&chunk).await.map_err(Close::Write)?;
    }
    Ok(())
}

async fn flush<W: AsyncWrite + Unpin>(writer: &mut BufWriter<W>) -> Result<(), Close> {
    writer.flush().await.map_err(Close::Write)
}
