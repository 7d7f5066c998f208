//! Transport of the quorum listener and of the connections to the other
//! members: plain TCP, or mutual TLS when the member is given a
//! [`QuorumTls`] (the broker's key store and trust store, reloaded when
//! they change). One path for both: the listener accepts and hands tonic
//! [`Conn`]s, the members dial through [`dial`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Mutual TLS for the quorum: who this member is, whom it trusts.
pub trait QuorumTls: Send + Sync + 'static {
    /// Accepts members' connections; a client certificate is required.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor;
    /// Connects to another member, presenting this member's certificate.
    fn connector(&self) -> Arc<rustls::ClientConfig>;
}

/// How this member reaches the others: from which local address, and
/// over TLS or not.
#[derive(Clone, Default)]
pub struct Dialer {
    pub source: Option<IpAddr>,
    pub tls: Option<Arc<dyn QuorumTls>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("source", &self.source)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// How long a TLS handshake on the quorum listener may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A connection of the quorum: TCP, or TLS over it (`T` the server or the
/// client side of the TLS stream).
pub enum Conn<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

type ServerConn = Conn<tokio_rustls::server::TlsStream<TcpStream>>;
type ClientConn = Conn<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for ServerConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        let tcp = match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        };
        TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: tcp.peer_addr().ok(),
        }
    }
}

/// The connections the quorum listener accepts, handshaken when `tls` is
/// given (a peer that fails the handshake is logged and dropped, never
/// served), until the returned stream is dropped or the returned task
/// (which owns the listener) is aborted.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<Arc<dyn QuorumTls>>,
) -> (
    tokio_stream::wrappers::ReceiverStream<io::Result<ServerConn>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let accept = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, not spin.
                    tracing::warn!(error = %e, "quorum listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(Conn::Tls(Box::new(s)))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "quorum listener: TLS handshake refused")
                    }
                    Err(_) => tracing::warn!(%peer, "quorum listener: TLS handshake timed out"),
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), accept)
}

/// Connects to the member at `uri` (`http://host:port`), from the
/// dialer's source address, over TLS when it has one (the host the name
/// the member's certificate must carry).
pub(crate) async fn dial(
    dialer: Dialer,
    uri: http::Uri,
) -> io::Result<hyper_util::rt::TokioIo<ClientConn>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let host = uri
        .host()
        .ok_or_else(|| invalid(format!("{uri}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| invalid(format!("{uri}: no port")))?;
    let mut last = invalid(format!("{host}: no address"));
    let mut stream = None;
    for addr in tokio::net::lookup_host((host.as_str(), port)).await? {
        match connect_from(addr, dialer.source).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    let conn = match &dialer.tls {
        None => Conn::Plain(stream),
        Some(tls) => {
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host}: {e}")))?;
            let s = tokio_rustls::TlsConnector::from(tls.connector())
                .connect(name, stream)
                .await?;
            Conn::Tls(Box::new(s))
        }
    };
    Ok(hyper_util::rt::TokioIo::new(conn))
}

async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}
