//! Bodies: reading the client's request body under a size limit, and the response body that
//! streams the provider's bytes to the client unchanged while handing a bounded copy to
//! extraction, enforcing the idle timeout and recording metrics when the stream ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Sleep;

/// Errors inside response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the gateway sends.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> GatewayBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> GatewayBody {
    full(Bytes::new())
}

/// Why the request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Larger than allowed.
    #[error("body exceeds {0} bytes")]
    TooLarge(usize),
    /// The client stopped sending or broke the framing.
    #[error("{0}")]
    Read(String),
    /// The client went silent.
    #[error("client sent nothing for {0:?}")]
    Idle(Duration),
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub async fn read_limited(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, ReadError> {
    if let Some(upper) = body.size_hint().upper()
        && upper > limit as u64
    {
        return Err(ReadError::TooLarge(limit));
    }
    let exact = body.size_hint().exact();
    let mut collected: Vec<u8> =
        Vec::with_capacity(exact.map(|n| n as usize).unwrap_or(0).min(limit));
    let mut first: Option<Bytes> = None;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ReadError::Idle(idle)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReadError::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let so_far = collected.len() + first.as_ref().map_or(0, Bytes::len);
        if so_far + data.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        // Most bodies arrive in one frame: keep it without copying.
        if first.is_none() && collected.is_empty() {
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                collected.extend_from_slice(&f);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(match first {
        Some(f) if collected.is_empty() => f,
        _ => Bytes::from(collected),
    })
}

/// Where the response copy goes.
#[derive(Debug)]
pub enum Capture {
    /// Nothing is captured.
    None,
    /// A whole (non-streamed) body is collected up to a limit.
    Whole {
        /// Chunks so far.
        chunks: Vec<Bytes>,
        /// Bytes so far.
        size: usize,
        /// Limit.
        limit: usize,
        /// Receives the body at the end, or nothing if it was too large or broken.
        done: Option<tokio::sync::oneshot::Sender<Option<Vec<Bytes>>>>,
    },
    /// A stream is copied chunk by chunk to the extraction task; the copy may lag behind the
    /// client by at most `limit` bytes (`lag` counts what is queued and not yet processed).
    Stream {
        /// To the extraction task.
        tx: mpsc::UnboundedSender<Bytes>,
        /// Bytes queued and not yet taken by the extraction task.
        lag: Arc<AtomicUsize>,
        /// Largest allowed lag.
        limit: usize,
    },
}

/// Called once when the response body ends (completely, with an error, or dropped by a client
/// that went away).
pub type Finisher = Box<dyn FnOnce(BodyOutcome) + Send>;

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Every byte was forwarded.
    Complete,
    /// The upstream failed or went idle mid-body.
    UpstreamError,
    /// The client went away before the end.
    ClientGone,
}

pin_project_lite::pin_project! {
    /// The provider's body on its way to the client.
    pub struct TeeBody {
        #[pin]
        inner: Incoming,
        capture: Capture,
        idle_timeout: Duration,
        idle: Pin<Box<Sleep>>,
        finisher: Option<Finisher>,
        // Called once when the copy fell behind and was abandoned.
        abandoned: Option<Box<dyn FnOnce() + Send>>,
    }

    impl PinnedDrop for TeeBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finisher.take() {
                finish(BodyOutcome::ClientGone);
            }
        }
    }
}

impl TeeBody {
    /// Wraps `inner`.
    pub fn new(
        inner: Incoming,
        capture: Capture,
        idle_timeout: Duration,
        finisher: Finisher,
        on_abandon: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            inner,
            capture,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            finisher: Some(finisher),
            abandoned: Some(on_abandon),
        }
    }
}

/// The upstream went silent for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?}; response aborted")]
pub struct IdleTimeout(pub Duration);

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    let timeout = *this.idle_timeout;
                    finish_capture(this.capture, false);
                    if let Some(finish) = this.finisher.take() {
                        finish(BodyOutcome::UpstreamError);
                    }
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(timeout)))));
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                finish_capture(this.capture, true);
                if let Some(finish) = this.finisher.take() {
                    after_this_poll(move || finish(BodyOutcome::Complete));
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                finish_capture(this.capture, false);
                if let Some(finish) = this.finisher.take() {
                    finish(BodyOutcome::UpstreamError);
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + *this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                if let Some(data) = frame.data_ref()
                    && !copy_chunk(this.capture, data)
                {
                    *this.capture = Capture::None;
                    if let Some(abandon) = this.abandoned.take() {
                        abandon();
                    }
                }
                // With a known length hyper stops polling once the last byte is out, so the end
                // is detected here rather than by a final `None`.
                if this.inner.is_end_stream() {
                    finish_capture(this.capture, true);
                    if let Some(finish) = this.finisher.take() {
                        after_this_poll(move || finish(BodyOutcome::Complete));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Copies a chunk; `false` means the copy must be abandoned (too large or too far behind).
fn copy_chunk(capture: &mut Capture, data: &Bytes) -> bool {
    match capture {
        Capture::None => true,
        Capture::Whole {
            chunks,
            size,
            limit,
            ..
        } => {
            *size += data.len();
            if *size > *limit {
                return false;
            }
            // `Bytes` clones share the buffer: no copy of the payload.
            chunks.push(data.clone());
            true
        }
        Capture::Stream { tx, lag, limit } => {
            let queued = lag.fetch_add(data.len(), Ordering::AcqRel) + data.len();
            queued <= *limit && tx.send(data.clone()).is_ok()
        }
    }
}

/// Runs `finish` once the task polling the body yields: after hyper has written (and flushed)
/// the frame being returned, so completing the exchange (metrics, usage record, observers)
/// is never on the way of the response's last bytes. Outside a runtime it runs at once.
fn after_this_poll(finish: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(async move { finish() })),
        Err(_) => finish(),
    }
}

fn finish_capture(capture: &mut Capture, complete: bool) {
    if let Capture::Whole { chunks, done, .. } = capture
        && let Some(done) = done.take()
    {
        let body = if complete {
            Some(std::mem::take(chunks))
        } else {
            None
        };
        let _ = done.send(body);
    }
    // Dropping a stream sender closes the channel: the extraction task sees the end.
    *capture = Capture::None;
}

/// Measures the gateway's own time for a request.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request arrived.
    pub arrived: Instant,
    /// Time spent waiting for the upstream's response headers.
    pub upstream_wait: Duration,
}

/// A response body held for the AIP verdict.
#[derive(Debug)]
pub enum Held {
    /// The whole body, within the limit.
    Complete(Vec<Bytes>),
    /// The body exceeds the limit: what was read, and the rest still to stream.
    TooLarge(Vec<Bytes>, Incoming),
    /// The upstream failed or went silent mid-body.
    Failed(String),
}

/// Reads a response body for the AIP verdict: all of it when it fits in `limit` bytes.
pub async fn hold(mut body: Incoming, limit: usize, idle: Duration) -> Held {
    let mut chunks = Vec::new();
    let mut size = 0usize;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Held::Failed(format!("no data for {} s", idle.as_secs())),
            Ok(None) => return Held::Complete(chunks),
            Ok(Some(Err(e))) => return Held::Failed(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing a JSON response needs.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len();
        chunks.push(data);
        if size > limit {
            return Held::TooLarge(chunks, body);
        }
    }
}

/// `prefix` followed by the rest of `body`: a held body that turned out too large.
pub fn prefixed(prefix: Vec<Bytes>, rest: Incoming) -> GatewayBody {
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(
        prefix
            .into_iter()
            .map(|b| Ok::<_, BoxError>(Frame::data(b))),
    );
    let tail =
        http_body_util::BodyStream::new(rest).map(|r| r.map_err(|e| Box::new(e) as BoxError));
    http_body_util::StreamBody::new(head.chain(tail)).boxed_unsync()
}
