//! The plain HTTP gateway (`--gateway`) for browsers and curl: `GET`/`HEAD /b/BUCKET/KEY` of
//! public-read buckets, with `Range`, `ETag` and `If-None-Match`, `Content-Type` and
//! `Content-Length`, streamed with bounded memory; `/b/BUCKET/` and `/b/BUCKET/PREFIX/` are
//! an HTML index. Any other request goes to the S3 service, so an S3 presigned URL (a private
//! bucket's object, shared for a while) works against the gateway's address too.

use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;
use s3s::dto::Range;
use s3s::{Body, HttpError};

use super::convert::read_body;
use crate::client::bucket::index::{object_name, ListQuery, MAX_LIST_KEYS};
use crate::client::Client;
use crate::error::Error;

/// What the gateway reads with: an anonymous client of this node.
pub struct Gateway {
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    client: tokio::sync::OnceCell<Arc<Client>>,
    pub(super) s3: s3s::service::S3Service,
}

impl Gateway {
    pub fn new(
        node: Multiaddr,
        swarm_key: Option<PreSharedKey>,
        s3: s3s::service::S3Service,
    ) -> Self {
        Gateway {
            node,
            swarm_key,
            client: tokio::sync::OnceCell::new(),
            s3,
        }
    }

    async fn client(&self) -> Result<Arc<Client>, Error> {
        self.client
            .get_or_try_init(|| async {
                let key = Keypair::generate_ed25519();
                Client::connect_with(self.node.clone(), key, self.swarm_key)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    /// Serves one request.
    pub async fn serve(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, HttpError> {
        let path = req.uri().path().to_string();
        let browse = matches!(*req.method(), Method::GET | Method::HEAD)
            && path.starts_with("/b/")
            && req
                .uri()
                .query()
                .is_none_or(|q| !q.contains("X-Amz-Signature"));
        if !browse {
            return hyper::service::Service::call(&self.s3, req).await;
        }
        Ok(match self.browse(&req, &path).await {
            Ok(resp) => resp,
            Err((status, message)) => text(status, &message),
        })
    }

    async fn browse(
        &self,
        req: &Request<hyper::body::Incoming>,
        path: &str,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let rest = percent_decode(&path[3..]).ok_or((
            StatusCode::BAD_REQUEST,
            "the path is not valid UTF-8".into(),
        ))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
        let client = self.client().await.map_err(unavailable)?;
        let info = client.bucket(bucket).await.map_err(status_of)?;
        if !info.meta.public_read {
            return Err((
                StatusCode::FORBIDDEN,
                format!("bucket {bucket} is not public-read; use a signed URL"),
            ));
        }
        if key.is_empty() || key.ends_with('/') {
            super::metered::set_op("index");
            return self.index(&client, bucket, key, req).await;
        }
        super::metered::set_op(if req.method() == Method::HEAD {
            "head"
        } else {
            "get"
        });
        let (_, entry) = client.head_object(bucket, key).await.map_err(status_of)?;
        let etag = entry.etag.as_ref().map(|e| format!("\"{e}\""));
        let if_none = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if let (Some(tag), Some(wanted)) = (&etag, if_none) {
            if wanted
                .split(',')
                .any(|w| w.trim() == tag || w.trim() == "*")
            {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r.headers_mut().insert(header::ETAG, header_value(tag));
                return Ok(r);
            }
        }
        let name = object_name(&info.owner.to_base58(), bucket, key);
        let record = client
            .record_for_get(&name, None)
            .await
            .map_err(status_of)?;
        let content_key = client.reader_key(&record, None).map_err(status_of)?;
        let size = record.plain_size();
        let range = match req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
        {
            None => None,
            Some(h) => {
                let unsatisfiable = || {
                    (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        format!("range {h} is outside the object's {size} bytes"),
                    )
                };
                let parsed = Range::parse(h).map_err(|_| unsatisfiable())?;
                Some(parsed.check(size).map_err(|_| unsatisfiable())?)
            }
        };
        let span = range.clone().unwrap_or(0..size);
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, (span.end - span.start).into());
        h.insert(header::ACCEPT_RANGES, header_value("bytes"));
        let content_type = entry
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        h.insert(header::CONTENT_TYPE, header_value(content_type));
        if let Some(tag) = &etag {
            h.insert(header::ETAG, header_value(tag));
        }
        if let Some(r) = &range {
            let shown = format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1));
            h.insert(header::CONTENT_RANGE, header_value(&shown));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        if req.method() == Method::HEAD {
            return Ok(resp);
        }
        *resp.body_mut() = Body::from(read_body(client, record, content_key, span));
        Ok(resp)
    }

    /// An HTML index of `prefix` in `bucket`, folders first.
    async fn index(
        &self,
        client: &Client,
        bucket: &str,
        prefix: &str,
        req: &Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let after = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("after="))
                .and_then(percent_decode)
        });
        let query = ListQuery {
            prefix: prefix.to_string(),
            delimiter: Some("/".into()),
            after,
            max_keys: MAX_LIST_KEYS,
        };
        let listing = client
            .list_objects(bucket, &query)
            .await
            .map_err(status_of)?;
        let mut html = format!(
            "<!doctype html><meta charset=utf-8><title>{0}/{1}</title><h1>{0}/{1}</h1><ul>",
            escape(bucket),
            escape(prefix)
        );
        for p in &listing.common_prefixes {
            let rel = &p[prefix.len()..];
            html += &format!(
                "<li><a href=\"{}\">{}</a></li>",
                escape(&percent_encode(rel)),
                escape(rel)
            );
        }
        for o in &listing.objects {
            let rel = &o.key[prefix.len()..];
            html += &format!(
                "<li><a href=\"{}\">{}</a> {} bytes</li>",
                escape(&percent_encode(rel)),
                escape(rel),
                o.size
            );
        }
        html += "</ul>";
        if let Some(next) = &listing.next_after {
            html += &format!(
                "<p><a href=\"?after={}\">more</a></p>",
                escape(&percent_encode(next))
            );
        }
        let mut resp = Response::new(Body::from(html));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header_value("text/html; charset=utf-8"),
        );
        Ok(resp)
    }
}

fn header_value(s: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(s).unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header_value("text/plain; charset=utf-8"),
    );
    r
}

fn unavailable(e: Error) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn status_of(e: Error) -> (StatusCode, String) {
    let status = match &e {
        Error::NoSuchBucket(_) | Error::NotFound(_) | Error::Deleted { .. } => {
            StatusCode::NOT_FOUND
        }
        Error::NoCapability(_) | Error::Rejected(_) => StatusCode::FORBIDDEN,
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, e.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `%XX` escapes to bytes, then UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
            out.push(c as char);
        } else {
            out += &format!("%{c:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips_and_refuses_bad_escapes() {
        let key = "a dir/ü & <b>.txt";
        assert_eq!(percent_decode(&percent_encode(key)).as_deref(), Some(key));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
