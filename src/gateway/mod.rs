//! Front doors for tools that do not speak our protocol: an S3-compatible API (`--s3`) and a
//! plain HTTP gateway for browsers and curl (`--gateway`). Both run in the node's process as
//! clients of that node, through the same client library as the CLI, so they add nothing to
//! the manager and nothing a client could not do itself.
//!
//! `keys` maps S3 access keys to client identities, `s3` the operations, `multipart` the
//! staged multipart uploads, `convert` what both share (errors, times, metadata, bodies), `http` the gateway, `metered` the request counts and latencies
//! both report to the node's metrics. The protocol surface and SigV4 are the `s3s` crate's.

mod convert;
mod http;
pub mod keys;
mod metered;
mod multipart;
mod s3;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use keys::KeyStore;
pub use metered::Observer;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// The most bytes of request head (line and headers) a connection may send before hyper
/// answers 431: a client cannot make us hold a gigabyte of headers.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// A running front door (S3 or gateway): stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Secrets come from the key file, re-read when it changes.
struct KeyAuth(Arc<KeyStore>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.lookup(access_key) {
            Some((secret, _)) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "no such access key (or revoked)"
            )),
        }
    }
}

/// Unsigned requests may only read (the operation then checks that the bucket is
/// public-read); everything else needs a signature.
struct PublicReads;

#[async_trait::async_trait]
impl S3Access for PublicReads {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        const READS: [&str; 6] = [
            "GetObject",
            "HeadObject",
            "HeadBucket",
            "ListObjects",
            "ListObjectsV2",
            "GetBucketLocation",
        ];
        metered::set_op(metered::s3_op_label(cx.s3_op().name()));
        if cx.credentials().is_some() || READS.contains(&cx.s3_op().name()) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "this request needs a signature"))
        }
    }
}

/// The S3 service of a node: its operations, key checks and access rule.
fn s3_service(
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    data_dir: &Path,
) -> s3s::service::S3Service {
    let keys = Arc::new(KeyStore::new(data_dir));
    let uploads = multipart::Uploads::new(data_dir);
    uploads.sweep();
    let mut b = S3ServiceBuilder::new(s3::SwarmS3::new(node, swarm_key, keys.clone(), uploads));
    b.set_auth(KeyAuth(keys));
    b.set_access(PublicReads);
    b.build()
}

/// Serves the S3 API on `addr`, acting through the node at `node` whose data dir is
/// `data_dir` (its access keys and staged uploads live there); every answered request is
/// reported to `observe` under `api="s3"`.
pub async fn serve_s3(
    addr: SocketAddr,
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    data_dir: &Path,
    observe: Observer,
) -> anyhow::Result<Server> {
    let s3 = s3_service(node, swarm_key, data_dir);
    let service = metered::Metered::new("s3", observe, move |req| {
        hyper::service::Service::call(&s3, req)
    });
    listen(addr, "S3", service).await
}

/// Serves the HTTP gateway on `addr` (and, behind it, the S3 API for presigned URLs),
/// reported to `observe` under `api="gateway"`.
pub async fn serve_gateway(
    addr: SocketAddr,
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    data_dir: &Path,
    observe: Observer,
) -> anyhow::Result<Server> {
    let s3 = s3_service(node.clone(), swarm_key, data_dir);
    let gateway = Arc::new(http::Gateway::new(node, swarm_key, s3));
    let service = metered::Metered::new("gateway", observe, move |req| {
        Box::pin(gateway.clone().serve(req))
    });
    listen(addr, "gateway", service).await
}

/// Accepts connections on `addr` and serves each with `service`, at most
/// [`MAX_CONNECTIONS`] at once.
async fn listen<S, B>(addr: SocketAddr, what: &'static str, service: S) -> anyhow::Result<Server>
where
    S: hyper::service::Service<
            ::http::Request<hyper::body::Incoming>,
            Response = ::http::Response<B>,
            Error = s3s::HttpError,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the {what} on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        http.http1().max_buf_size(MAX_HEAD_BYTES.max(8192));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!("{what} accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
    });
    Ok(Server { addr: local, task })
}
