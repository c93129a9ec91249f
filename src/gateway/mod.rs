//! Front doors for tools that do not speak our protocol: an S3-compatible API (`--s3`). It
//! runs in the node's process as a client of that node, through the same client library as
//! the CLI, so it adds nothing to the manager and nothing a client could not do itself.
//!
//! `keys` maps S3 access keys to client identities, `s3` the operations, `multipart` the
//! staged multipart uploads. The protocol surface and SigV4 are the `s3s` crate's.

pub mod keys;
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

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// The most bytes of request head (line and headers) a connection may send before hyper
/// answers 431: a client cannot make us hold a gigabyte of headers.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// A running S3 server.
pub struct S3Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
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
        if cx.credentials().is_some() || READS.contains(&cx.s3_op().name()) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "this request needs a signature"))
        }
    }
}

/// Serves the S3 API on `addr`, acting through the node at `node` whose data dir is
/// `data_dir` (its access keys and staged uploads live there).
pub async fn serve_s3(
    addr: SocketAddr,
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    data_dir: &Path,
) -> anyhow::Result<S3Server> {
    let keys = Arc::new(KeyStore::new(data_dir));
    let uploads = multipart::Uploads::new(data_dir);
    uploads.sweep();
    let service = {
        let mut b = S3ServiceBuilder::new(s3::SwarmS3::new(node, swarm_key, keys.clone(), uploads));
        b.set_auth(KeyAuth(keys));
        b.set_access(PublicReads);
        b.build()
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for S3 on {addr}: {e}"))?;
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
                    tracing::warn!("S3 accept: {e}");
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
    Ok(S3Server { addr: local, task })
}
