//! Request counts and latencies of the S3 API and the gateway
//! (`swarmstore_http_requests_total{api,op,code}` and
//! `swarmstore_http_request_duration_seconds{api,op}`).
//!
//! The operation is known only inside `s3s` (it routes the request), so the access check,
//! which `s3s` calls with the operation for every request it identifies, writes its name into
//! a task-local slot that this wrapper opened around the request; the gateway's own routes
//! write theirs the same way. A request refused before it was identified (a bad signature,
//! an unparsable request) stays `unknown`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use s3s::{Body, HttpError};

/// Where each answered request is reported: `(api, op, status code, time to the response
/// head)`. The node's process passes its metrics here; the gateway itself knows no node.
pub type Observer = Arc<dyn Fn(&'static str, &'static str, u16, Duration) + Send + Sync>;

tokio::task_local! {
    static OP: Cell<&'static str>;
}

/// Names the operation of the request being served (a no-op outside [`Metered`]).
pub(super) fn set_op(op: &'static str) {
    let _ = OP.try_with(|slot| slot.set(op));
}

/// The S3 operations this API implements, as label values; any other is `other` (s3s answers
/// it NotImplemented), so a client cannot mint label values.
const S3_OPS: &[&str] = &[
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateBucket",
    "CreateMultipartUpload",
    "DeleteBucket",
    "DeleteObject",
    "DeleteObjects",
    "GetBucketLocation",
    "GetObject",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListMultipartUploads",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "PutObject",
    "UploadPart",
];

pub(super) fn s3_op_label(name: &str) -> &'static str {
    S3_OPS
        .iter()
        .find(|op| **op == name)
        .copied()
        .unwrap_or("other")
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, HttpError>> + Send>>;

/// A service that counts and times every request `inner` answers.
pub(super) struct Metered<F> {
    api: &'static str,
    observe: Observer,
    inner: Arc<F>,
}

impl<F> Clone for Metered<F> {
    fn clone(&self) -> Self {
        Metered {
            api: self.api,
            observe: self.observe.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<F> Metered<F>
where
    F: Fn(Request<Incoming>) -> Answer + Send + Sync + 'static,
{
    pub(super) fn new(api: &'static str, observe: Observer, inner: F) -> Self {
        Metered {
            api,
            observe,
            inner: Arc::new(inner),
        }
    }
}

impl<F> hyper::service::Service<Request<Incoming>> for Metered<F>
where
    F: Fn(Request<Incoming>) -> Answer + Send + Sync + 'static,
{
    type Response = Response<Body>;
    type Error = HttpError;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let (api, observe) = (self.api, self.observe.clone());
        let answer = (self.inner)(req);
        Box::pin(OP.scope(Cell::new("unknown"), async move {
            let result = answer.await;
            let op = OP.with(Cell::get);
            // A service error drops the connection: hyper answers nothing, counted as 500.
            let code = result.as_ref().map_or(500, |r| r.status().as_u16());
            observe(api, op, code, started.elapsed());
            result
        }))
    }
}
