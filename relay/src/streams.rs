//! Lease streams: `GET /v1/leases/{id}/events`, a `text/event-stream` that a page carrying a
//! leased email keeps open, so that a lease the relay ends (an email edited in HubSpot, a merge, a
//! deletion, the app's email changed) reaches the page within about a second instead of at its
//! next renewal (a third of the lease, ~200 s at the default).
//!
//! Why a server-sent event stream and not a long poll: the browser's `EventSource` reconnects by
//! itself, one request per page serves the whole page life (a long poll is a request per answer
//! or timeout), and the relay sends nothing but a keep-alive comment until the lease ends.
//!
//! Several relays on one PostgreSQL: the lease may end on any relay (the webhook reached relay A,
//! the page's stream is on relay B). So each relay asks its store, every [`CHECK_MS`] while any
//! stream is open, one statement for all its open streams ([`crate::store::Store::live_leases_of`]):
//! the leases among them still live. A lease ended in this relay wakes the check at once
//! ([`Streams::poke`]). The number of open streams per relay is bounded (`HSQ_MAX_STREAMS`); past
//! it the relay answers 503 `streams_full` and the page keeps to its renewal timer.

use crate::relay::{now_ms, Relay};
use axum::response::sse::{Event, KeepAlive, Sse};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How often the open streams' leases are checked in the store.
pub const CHECK_MS: u64 = 250;
/// A comment at least this often keeps proxies from closing an idle stream; more often when the
/// relay's own idle timeout is shorter (a connection whose response is streaming counts as idle
/// while no byte moves), at half of `HSQ_IDLE_TIMEOUT_MS`.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Lease ids per statement (one statement covers up to this many open streams).
const CHUNK: usize = 1000;

/// How a stream ends: its lease ended, or the relay shuts down (the page reconnects elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ended,
    Closing,
}

/// The open streams of this relay, by lease id.
#[derive(Debug, Default)]
pub struct Streams {
    watchers: Mutex<HashMap<String, Vec<oneshot::Sender<End>>>>,
    open: AtomicUsize,
    max: usize,
    closing: AtomicBool,
    wake: Notify,
    /// Store statements made by the check, and streams told their lease ended.
    pub checks: AtomicU64,
    pub ended: AtomicU64,
}

/// Counts one open stream while alive.
#[derive(Debug)]
struct Open(Arc<Relay>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Streams {
    pub fn new(max: usize) -> Self {
        Streams { max, ..Default::default() }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Checks the open streams' leases now (a lease ended in this relay).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Ends every stream without an `ended` event (the relay stops; pages reconnect to another).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let all: Vec<_> = self.watchers.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, senders) in all {
            for s in senders {
                let _ = s.send(End::Closing);
            }
        }
    }

    fn watch(&self, lease_id: &str) -> Option<oneshot::Receiver<End>> {
        if self.closing.load(Ordering::Relaxed) {
            return None;
        }
        // Counted before it is known to fit, so two requests at once cannot both take the last place.
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.watchers.lock().unwrap_or_else(|e| e.into_inner()).entry(lease_id.to_string()).or_default().push(tx);
        Some(rx)
    }

    /// The leases watched by a stream that is still open (closed ones are dropped).
    fn watched(&self) -> Vec<String> {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        w.keys().cloned().collect()
    }

    fn end(&self, lease_id: &str) {
        let senders = self.watchers.lock().unwrap_or_else(|e| e.into_inner()).remove(lease_id);
        for s in senders.into_iter().flatten() {
            if s.send(End::Ended).is_ok() {
                self.ended.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Opens the stream of `lease_id` (already checked to be a lease id): `None` past the bound or
/// while the relay stops. The first check runs at once, so a lease that already ended is told so.
pub fn open(relay: &Arc<Relay>, lease_id: &str) -> Option<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let rx = relay.streams.watch(lease_id)?;
    let guard = Open(relay.clone());
    relay.streams.poke();
    let lease = lease_id.to_string();
    // One `ended` event, then the stream ends; when the relay stops, it ends without one.
    let stream = futures_util::stream::unfold(Some((rx, guard, lease)), |state| async move {
        let (rx, guard, lease) = state?;
        match rx.await {
            Ok(End::Ended) => {
                drop(guard);
                Some((Ok(Event::default().event("ended").data(lease)), None))
            }
            _ => None,
        }
    });
    let every = KEEP_ALIVE.min(Duration::from_millis(relay.config.idle_timeout_ms / 2)).max(Duration::from_millis(50));
    Some(Sse::new(stream).keep_alive(KeepAlive::new().interval(every)))
}

/// Runs until the relay stops: while streams are open, asks the store every [`CHECK_MS`] (or at
/// once when poked) which of their leases are still live, and ends the streams of the others.
pub async fn run(relay: Arc<Relay>) {
    let streams = &relay.streams;
    loop {
        let ids = streams.watched();
        if ids.is_empty() {
            streams.wake.notified().await;
            continue;
        }
        let now = now_ms();
        for chunk in ids.chunks(CHUNK) {
            streams.checks.fetch_add(1, Ordering::Relaxed);
            match relay.store.live_leases_of(chunk, now).await {
                Ok(live) => {
                    for id in chunk.iter().filter(|id| !live.contains(id.as_str())) {
                        streams.end(id);
                    }
                }
                // The streams stay open; the next check tries again (and pages still renew).
                Err(e) => tracing::warn!(error = %e, "lease streams: cannot check their leases"),
            }
        }
        tokio::select! {
            _ = streams.wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(CHECK_MS)) => {},
        }
    }
}

/// The streams' lines of `/metrics`.
pub fn render(s: &Streams, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP hsq_lease_streams Lease streams open on this relay.\n# TYPE hsq_lease_streams gauge\nhsq_lease_streams {}", s.open());
    let _ = writeln!(
        out,
        "# HELP hsq_lease_stream_checks_total Store statements checking the open streams' leases.\n# TYPE hsq_lease_stream_checks_total counter\nhsq_lease_stream_checks_total {}",
        s.checks.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP hsq_lease_streams_ended_total Streams told their lease ended.\n# TYPE hsq_lease_streams_ended_total counter\nhsq_lease_streams_ended_total {}",
        s.ended.load(Ordering::Relaxed)
    );
}
