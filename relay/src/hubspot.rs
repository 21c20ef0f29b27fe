//! The one HubSpot client every call goes through: a rate limiter fed by HubSpot's
//! `X-HubSpot-RateLimit-*` headers, backoff for 429/5xx/timeouts (`Retry-After` when present),
//! reads of different users coalesced into `batch/read` calls of up to 100, and new users' contacts
//! coalesced into `batch/upsert` calls of up to 100 (by the unique id property, never by email).

use crate::config::{HubSpotArgs, Secret};
use crate::metrics::Metrics;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// HubSpot's rate-limit window.
const INTERVAL: Duration = Duration::from_secs(10);
/// Our window entries outlive HubSpot's by this much, so clock and network skew don't cost 429s.
const MARGIN: Duration = Duration::from_millis(150);
/// Inputs per batch call.
pub const BATCH_MAX: usize = 100;
/// How long the batcher waits for more reads (or new contacts) to join a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(3);
/// While reads keep coming (each within `BATCH_WINDOW` of the last), a batch keeps gathering up
/// to one rate-limit share after its first read (`INTERVAL` / calls allowed: 100 ms at 100 calls
/// per 10 s), within these bounds, so a stream of reads asks no more read calls than the limit
/// allows. A lone read still goes after `BATCH_WINDOW`.
const BATCH_GATHER_MIN: Duration = Duration::from_millis(20);
const BATCH_GATHER_MAX: Duration = Duration::from_millis(200);
/// Once a quarter of the rate-limit window is spent (by this relay, or by others as HubSpot's
/// `Remaining` header shows), a batch that is not full waits for more inputs up to this part of
/// the read budget after its first one (a new user makes three such steps: read by id, by email,
/// create). A burst of sign-ups reaches the batcher as a stream (each request passes the store
/// first), and on N relays as N thinner streams; cut by time alone, 1,000 new users cost 80 to 160
/// reads where 20 full batches do, and the calls the window lacked then came back as 503s.
const PRESSED_GATHER_PART: u32 = 5;
/// Create calls in flight at once. While one is (or waits for the rate limit), new contacts gather
/// into the next batch: creation is bound by HubSpot's rate limit, not by calls in flight, and one
/// at a time makes the fewest calls (100 users a call at most, at most 10 s of 503s in a burst).
const CREATES_IN_FLIGHT: usize = 1;

/// A contact as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: String,
    pub email: Option<String>,
    /// The value of the unique id property (the app's user id it is linked to).
    pub sub: Option<String>,
}

/// Why a HubSpot call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubSpotError {
    /// HubSpot answered with an error status.
    #[error("HubSpot answered {status}: {message}")]
    Status { status: u16, category: Option<String>, message: String },
    /// The call could not be made or timed out, after retries.
    #[error("HubSpot could not be reached: {0}")]
    Unreachable(String),
    /// The rate limit would make this call wait past its deadline.
    #[error("HubSpot's rate limit leaves no room before the deadline; retry in {0:?}")]
    Busy(Duration),
}

impl HubSpotError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HubSpotError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The id in HubSpot's "Contact already exists. Existing ID: N" conflict message.
    pub fn existing_id(&self) -> Option<String> {
        match self {
            HubSpotError::Status { status: 409, message, .. } => {
                message.rsplit("Existing ID: ").next().filter(|_| message.contains("Existing ID: ")).map(|s| s.trim().trim_end_matches('.').to_string())
            }
            _ => None,
        }
    }
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    /// Give up (with `Busy` or the last error) rather than wait past this.
    pub deadline: Option<Instant>,
}

impl Retry {
    /// For a page waiting on the answer: a few attempts inside `budget`.
    pub fn interactive(budget: Duration) -> Self {
        Retry { attempts: 4, deadline: Some(Instant::now() + budget) }
    }
    /// For background work (outbox, sync): patient.
    pub fn background() -> Self {
        Retry { attempts: 8, deadline: None }
    }
}

#[derive(Debug)]
struct Limiter {
    max: usize,
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// 429s in a row, for the pause when HubSpot sends no `Retry-After`.
    strikes: u32,
}

impl Limiter {
    /// The time to wait before a call may go, or None: it may go now (and is counted).
    fn try_take(&mut self, now: Instant) -> Option<Duration> {
        while self.sent.front().is_some_and(|t| *t + INTERVAL + MARGIN <= now) {
            self.sent.pop_front();
        }
        if let Some(b) = self.blocked_until.filter(|b| *b > now) {
            return Some(b - now);
        }
        if self.sent.len() >= self.max {
            return Some(self.sent.front().map(|t| *t + INTERVAL + MARGIN - now).unwrap_or(INTERVAL));
        }
        self.sent.push_back(now);
        None
    }

    /// HubSpot says how many calls its window has left: when that is fewer than ours, count the
    /// difference as spent now.
    fn observe(&mut self, max: Option<usize>, remaining: Option<usize>, now: Instant) {
        if let Some(m) = max.filter(|m| *m > 0) {
            self.max = m;
        }
        if let Some(r) = remaining {
            let ours = self.max.saturating_sub(self.sent.len());
            for _ in r..ours {
                self.sent.push_back(now);
            }
        }
    }
}

struct ReadRequest {
    id_property: String,
    value: String,
    /// The caller stops waiting then: a batch never waits for the rate limit past its members'.
    deadline: Instant,
    reply: oneshot::Sender<Result<Option<Contact>, HubSpotError>>,
}

type CreateReply = oneshot::Sender<Result<Contact, HubSpotError>>;

struct CreateRequest {
    sub: String,
    properties: Map<String, Value>,
    deadline: Instant,
    reply: CreateReply,
}

/// New contacts waiting for one create call: by the user's id, the properties and deadline of the
/// first request and everyone waiting for it.
type CreateBatch = HashMap<String, (Map<String, Value>, Instant, Vec<CreateReply>)>;

/// The HubSpot client. Cheap to clone.
#[derive(Clone)]
pub struct HubSpot {
    inner: Arc<Inner>,
    reads: mpsc::UnboundedSender<ReadRequest>,
    creates: mpsc::UnboundedSender<CreateRequest>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Secret,
    pub id_property: String,
    limiter: Mutex<Limiter>,
    metrics: Arc<Metrics>,
    read_budget: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for HubSpot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpot").field("base", &self.inner.base).field("token", &self.inner.token).finish()
    }
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2 + 1))
}

fn header_num(h: &reqwest::header::HeaderMap, name: &str) -> Option<usize> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl HubSpot {
    /// Builds the client; `read_budget` bounds how long a page's read may retry.
    pub fn new(args: &HubSpotArgs, metrics: Arc<Metrics>, read_budget: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(args.timeout())
            .connect_timeout(args.timeout().min(Duration::from_secs(3)))
            .pool_max_idle_per_host(32)
            .build()?;
        let inner = Arc::new(Inner {
            http,
            base: args.api_base.clone(),
            token: args.token.clone(),
            id_property: args.id_property.clone(),
            limiter: Mutex::new(Limiter { max: args.rate_limit as usize, sent: VecDeque::new(), blocked_until: None, strikes: 0 }),
            metrics,
            read_budget,
            timeout: args.timeout(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        let client = HubSpot { inner, reads: tx, creates: ctx };
        tokio::spawn(client.clone().batch_reads(rx));
        tokio::spawn(client.clone().batch_creates(crx));
        Ok(client)
    }

    pub fn id_property(&self) -> &str {
        &self.inner.id_property
    }

    async fn take_slot(&self, deadline: Option<Instant>) -> Result<(), HubSpotError> {
        loop {
            let now = Instant::now();
            let wait = self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner()).try_take(now);
            let Some(wait) = wait else { return Ok(()) };
            if deadline.is_some_and(|d| now + wait > d) {
                return Err(HubSpotError::Busy(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One HubSpot call with the limiter and retries. Answers the status and JSON body of a 2xx.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, retry: Retry) -> Result<(u16, Value), HubSpotError> {
        self.call_noting(method, path, body, retry, &mut false).await
    }

    /// [`HubSpot::call`], setting `unknown` when an attempt's outcome is unknown: it was sent and
    /// no answer came (a timeout, a connection lost after connecting, an answer broken off), or
    /// HubSpot answered 5xx (its gateway's 502/504 say nothing of what its servers did). HubSpot
    /// may still apply such a write, later than any answer seen here (hubspot-behavior.md §10).
    pub async fn call_noting(&self, method: Method, path: &str, body: Option<&Value>, retry: Retry, unknown: &mut bool) -> Result<(u16, Value), HubSpotError> {
        let mut backoff = Duration::from_millis(200);
        let mut last = HubSpotError::Unreachable("no attempt made".into());
        for attempt in 1..=retry.attempts.max(1) {
            self.take_slot(retry.deadline).await?;
            let mut req = self
                .inner
                .http
                .request(method.clone(), format!("{}{path}", self.inner.base))
                .bearer_auth(self.inner.token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(d) = retry.deadline {
                let left = d.saturating_duration_since(Instant::now()).max(Duration::from_millis(50));
                req = req.timeout(left.min(self.inner.timeout));
            }
            let result = req.send().await;
            let mut wait = jitter(backoff);
            match result {
                Err(e) => {
                    *unknown |= !e.is_connect();
                    self.inner.metrics.hubspot_call(if e.is_timeout() { "timeout" } else { "error" });
                    last = HubSpotError::Unreachable(if e.is_timeout() { "timed out".into() } else { format!("{e}") });
                }
                Ok(res) => {
                    let status = res.status();
                    let headers = res.headers().clone();
                    self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner()).observe(
                        header_num(&headers, "x-hubspot-ratelimit-max"),
                        header_num(&headers, "x-hubspot-ratelimit-remaining"),
                        Instant::now(),
                    );
                    self.inner.metrics.hubspot_call(status.as_str());
                    let text = match res.text().await {
                        Ok(t) => t,
                        Err(e) => {
                            *unknown = true;
                            last = HubSpotError::Unreachable(format!("the answer broke off: {e}"));
                            self.pause(attempt, retry, wait).await;
                            continue;
                        }
                    };
                    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    *unknown |= status.is_server_error();
                    if status.is_success() {
                        self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner()).strikes = 0;
                        return Ok((status.as_u16(), json));
                    }
                    let err = HubSpotError::Status {
                        status: status.as_u16(),
                        category: json["category"].as_str().map(str::to_string),
                        message: json["message"].as_str().map(str::to_string).unwrap_or_else(|| text.chars().take(300).collect()),
                    };
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        // Retry-After when HubSpot sends it. Without it (HubSpot documents none), the 429
                        // means calls we don't see share the limit: pause 250 ms, doubling per 429 in a row.
                        let after = header_num(&headers, "retry-after").map(|s| Duration::from_secs(s as u64));
                        let mut l = self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner());
                        l.strikes += 1;
                        let pause = Duration::from_millis(250 << (l.strikes - 1).min(6));
                        // Several relays share the account's limit and see the same 429s: without
                        // Retry-After a random part of the pause spreads their next calls instead of
                        // sending them together again (Retry-After is followed as given).
                        let until = Instant::now() + after.unwrap_or_else(|| jitter(pause));
                        l.blocked_until = Some(l.blocked_until.map_or(until, |b| b.max(until)));
                        wait = Duration::ZERO; // the limiter does the waiting
                    } else if !status.is_server_error() {
                        return Err(err);
                    }
                    last = err;
                }
            }
            if attempt < retry.attempts {
                if retry.deadline.is_some_and(|d| Instant::now() + wait > d) {
                    break;
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        Err(last)
    }

    async fn pause(&self, attempt: u32, retry: Retry, wait: Duration) {
        if attempt < retry.attempts && !retry.deadline.is_some_and(|d| Instant::now() + wait > d) {
            tokio::time::sleep(wait).await;
        }
    }

    fn contact_from(&self, v: &Value) -> Option<Contact> {
        let id = v["id"].as_str()?.to_string();
        let p = &v["properties"];
        let text = |k: &str| p[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        Some(Contact { id, email: text("email").map(|e| e.to_ascii_lowercase()), sub: text(&self.inner.id_property) })
    }

    fn properties(&self) -> Vec<String> {
        vec!["email".into(), self.inner.id_property.clone()]
    }

    /// Whether the rate-limit window is at least a quarter spent, and how long a batch may keep
    /// gathering: while pressed, [`PRESSED_GATHER_PART`] of the read budget; else one share of
    /// the limit (see [`BATCH_GATHER_MIN`]).
    fn gather_for(&self) -> (bool, Duration) {
        let now = Instant::now();
        let mut l = self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner());
        while l.sent.front().is_some_and(|t| *t + INTERVAL + MARGIN <= now) {
            l.sent.pop_front();
        }
        let pressed = l.sent.len() * 4 >= l.max || l.blocked_until.is_some_and(|b| b > now);
        if pressed {
            (true, self.inner.read_budget / PRESSED_GATHER_PART)
        } else {
            (false, (INTERVAL / l.max.max(1) as u32).clamp(BATCH_GATHER_MIN, BATCH_GATHER_MAX))
        }
    }

    /// Reads the contact whose `id_property` is `value` (`email` or the unique id property).
    /// Concurrent reads are coalesced into `batch/read` calls; the same value is read once.
    pub async fn read_by(&self, id_property: &str, value: &str) -> Result<Option<Contact>, HubSpotError> {
        self.read_by_until(id_property, value, Instant::now() + self.inner.read_budget).await
    }

    /// [`HubSpot::read_by`] for a caller that stops waiting at `deadline`: the batch's call waits
    /// for the rate limit no longer than its latest member (then answers `Busy`), and is not made
    /// when every member has stopped waiting.
    pub async fn read_by_until(&self, id_property: &str, value: &str, deadline: Instant) -> Result<Option<Contact>, HubSpotError> {
        let (tx, rx) = oneshot::channel();
        let req = ReadRequest { id_property: id_property.to_string(), value: value.to_string(), deadline, reply: tx };
        if self.reads.send(req).is_err() {
            return Err(HubSpotError::Unreachable("the read batcher stopped".into()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(r) => r.unwrap_or_else(|_| Err(HubSpotError::Unreachable("the read batcher dropped the read".into()))),
            Err(_) => Err(HubSpotError::Unreachable("HubSpot did not answer within the budget".into())),
        }
    }

    async fn batch_reads(self, mut rx: mpsc::UnboundedReceiver<ReadRequest>) {
        while let Some(first) = rx.recv().await {
            let mut groups: HashMap<String, HashMap<String, Vec<oneshot::Sender<_>>>> = HashMap::new();
            let mut deadlines: HashMap<String, Instant> = HashMap::new();
            let mut count = 1;
            let key = |r: &ReadRequest| if r.id_property == "email" { r.value.to_ascii_lowercase() } else { r.value.clone() };
            let mut latest = |r: &ReadRequest| {
                let d = deadlines.entry(r.id_property.clone()).or_insert(r.deadline);
                *d = (*d).max(r.deadline);
            };
            latest(&first);
            groups.entry(first.id_property.clone()).or_default().entry(key(&first)).or_default().push(first.reply);
            let started = Instant::now();
            let (pressed, share) = self.gather_for();
            let mut until = started + if pressed { share } else { BATCH_WINDOW };
            while count < BATCH_MAX {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(r)) => {
                        let k = key(&r);
                        latest(&r);
                        let g = groups.entry(r.id_property.clone()).or_default();
                        if !g.contains_key(&k) {
                            count += 1;
                        }
                        g.entry(k).or_default().push(r.reply);
                        if !pressed {
                            until = (Instant::now() + BATCH_WINDOW).min(started + share);
                        }
                    }
                    _ => break,
                }
            }
            for (prop, waiting) in groups {
                let me = self.clone();
                let deadline = deadlines.get(&prop).copied().unwrap_or_else(|| Instant::now() + me.inner.read_budget);
                tokio::spawn(async move { me.run_batch(prop, waiting, deadline).await });
            }
        }
    }

    async fn run_batch(&self, prop: String, mut waiting: HashMap<String, Vec<oneshot::Sender<Result<Option<Contact>, HubSpotError>>>>, deadline: Instant) {
        // Nobody waits for a value any more (their requests ended): it is not read.
        waiting.retain(|_, replies| {
            replies.retain(|r| !r.is_closed());
            !replies.is_empty()
        });
        if waiting.is_empty() {
            return;
        }
        let retry = Retry { attempts: 4, deadline: Some(deadline) };
        let result = if waiting.len() == 1 {
            // One value: a plain GET is the same one call, and simpler for HubSpot's logs.
            let value = waiting.keys().next().cloned().unwrap_or_default();
            let path = format!(
                "/crm/v3/objects/contacts/{}?idProperty={}&properties={}",
                encode(&value),
                encode(&prop),
                self.properties().join(",")
            );
            match self.call(Method::GET, &path, None, retry).await {
                Ok((_, v)) => Ok(self.contact_from(&v).into_iter().map(|c| (value.clone(), c)).collect::<HashMap<_, _>>()),
                Err(HubSpotError::Status { status: 404, .. }) => Ok(HashMap::new()),
                Err(e) => Err(e),
            }
        } else {
            let inputs: Vec<Value> = waiting.keys().map(|v| json!({ "id": v })).collect();
            let body = json!({ "idProperty": prop, "properties": self.properties(), "inputs": inputs });
            match self.call(Method::POST, "/crm/v3/objects/contacts/batch/read", Some(&body), retry).await {
                Ok((_, v)) => {
                    let mut found = HashMap::new();
                    for r in v["results"].as_array().into_iter().flatten() {
                        if let Some(c) = self.contact_from(r) {
                            let k = if prop == "email" { c.email.clone() } else { c.sub.clone() };
                            if let Some(k) = k {
                                found.insert(k, c);
                            }
                        }
                    }
                    Ok(found)
                }
                Err(e) => Err(e),
            }
        };
        for (value, replies) in waiting {
            let answer = match &result {
                Ok(found) => Ok(found.get(&value).cloned()),
                Err(e) => Err(e.clone()),
            };
            for r in replies {
                let _ = r.send(answer.clone());
            }
        }
    }

    /// Creates the contact of the user `sub` (the unique id property is set to it) with
    /// `properties`. Concurrent creations of different users are coalesced: those arriving within
    /// a few ms, or while earlier create calls are still in flight (waiting for the rate limit,
    /// say), go in one `batch/upsert` call of up to 100 by the unique id property. A lone one is a
    /// plain create. A 409 (the email is another contact's) comes back as `Status{409}` with the
    /// existing id in its message, as from a plain create.
    ///
    /// Upsert by the id property never matches a contact by email. If another relay created this
    /// user's contact meanwhile, the upsert finds it by the id and writes the same properties
    /// (the app's current email, which that relay wrote too unless the app changed it since: then
    /// no lease on the old email was issued, since every decision re-reads the app's email).
    pub async fn create_for(&self, sub: &str, properties: Map<String, Value>, deadline: Instant) -> Result<Contact, HubSpotError> {
        let _waiting = self.inner.metrics.creating();
        let (tx, rx) = oneshot::channel();
        let req = CreateRequest { sub: sub.to_string(), properties, deadline, reply: tx };
        if self.creates.send(req).is_err() {
            return Err(HubSpotError::Unreachable("the create batcher stopped".into()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(r) => r.unwrap_or_else(|_| Err(HubSpotError::Unreachable("the create batcher dropped the contact".into()))),
            Err(_) => Err(HubSpotError::Unreachable("HubSpot did not create the contact within the budget".into())),
        }
    }

    async fn batch_creates(self, mut rx: mpsc::UnboundedReceiver<CreateRequest>) {
        let in_flight = Arc::new(Semaphore::new(CREATES_IN_FLIGHT));
        let add = |batch: &mut CreateBatch, r: CreateRequest| {
            let e = batch.entry(r.sub).or_insert_with(|| (r.properties, r.deadline, Vec::new()));
            e.1 = e.1.max(r.deadline);
            e.2.push(r.reply);
        };
        while let Some(first) = rx.recv().await {
            let mut batch = CreateBatch::new();
            add(&mut batch, first);
            // While the rate limit is pressed, a batch that is not full gathers longer (reads).
            let (pressed, hold) = self.gather_for();
            let until = Instant::now() + if pressed { hold } else { BATCH_WINDOW };
            while batch.len() < BATCH_MAX {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(r)) => add(&mut batch, r),
                    _ => break,
                }
            }
            // While earlier batches are in flight, keep gathering (up to a full batch).
            let permit = loop {
                if batch.len() >= BATCH_MAX {
                    break in_flight.clone().acquire_owned().await;
                }
                tokio::select! {
                    p = in_flight.clone().acquire_owned() => break p,
                    r = rx.recv() => match r {
                        Some(r) => add(&mut batch, r),
                        None => break in_flight.clone().acquire_owned().await,
                    },
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.run_creates(batch).await;
                drop(permit);
            });
        }
    }

    async fn run_creates(&self, mut batch: CreateBatch) {
        // Nobody waits for a contact any more (their requests timed out): it is made next time.
        batch.retain(|_, (_, _, replies)| replies.iter().any(|r| !r.is_closed()));
        if batch.is_empty() {
            return;
        }
        let deadline = batch.values().map(|(_, d, _)| *d).max();
        let retry = Retry { attempts: 4, deadline };
        // Two new users with one email never share a call: the second is created after, alone
        // (its 409 then names the first one's contact, as from a plain create).
        let mut seen = std::collections::HashSet::new();
        let (mut first, mut later) = (Vec::new(), Vec::new());
        for (sub, (props, _, _)) in &batch {
            let email = props.get("email").and_then(Value::as_str).map(str::to_ascii_lowercase);
            let item = (sub.clone(), props.clone());
            if email.is_none_or(|e| seen.insert(e)) { first.push(item) } else { later.push(item) }
        }
        let mut answers = self.upsert_all(first, retry).await;
        for (sub, props) in later {
            let r = self.create_one(&sub, &props, retry).await;
            answers.insert(sub, r);
        }
        for (sub, (_, _, replies)) in batch {
            let answer = answers
                .remove(&sub)
                .unwrap_or_else(|| Err(HubSpotError::Unreachable("HubSpot's batch answer left this contact out".into())));
            for r in replies {
                let _ = r.send(answer.clone());
            }
        }
    }

    /// Creates these users' contacts in one `batch/upsert` call (one alone: a plain create). A
    /// call refused as a whole for one input (a 400, or the 409 HubSpot may give a whole batch
    /// for one input's email) is split in halves, so one bad input costs a few calls, not one
    /// per user; 401, 403 and 404 are the account's problem and answer every input.
    fn upsert_all(&self, items: Vec<(String, Map<String, Value>)>, retry: Retry) -> BoxFuture<'_, HashMap<String, Result<Contact, HubSpotError>>> {
        Box::pin(async move {
            let mut answers = HashMap::new();
            if items.len() <= 1 {
                for (sub, props) in items {
                    let r = self.create_one(&sub, &props, retry).await;
                    answers.insert(sub, r);
                }
                return answers;
            }
            let idp = self.inner.id_property.clone();
            let inputs: Vec<Value> = items
                .iter()
                .map(|(sub, props)| {
                    let mut p = props.clone();
                    // Echoed back, so each result names its user.
                    p.insert(idp.clone(), json!(sub));
                    json!({ "id": sub, "idProperty": idp, "properties": p })
                })
                .collect();
            match self.call(Method::POST, "/crm/v3/objects/contacts/batch/upsert", Some(&json!({ "inputs": inputs })), retry).await {
                Ok((_, v)) => {
                    for r in v["results"].as_array().into_iter().flatten() {
                        if let Some(c) = self.contact_from(r) {
                            if let Some(sub) = c.sub.clone() {
                                answers.insert(sub, Ok(c));
                            }
                        }
                    }
                    for e in v["errors"].as_array().into_iter().flatten() {
                        let category = e["category"].as_str().map(str::to_string);
                        let status = if category.as_deref() == Some("CONFLICT") { 409 } else { 400 };
                        let message = e["message"].as_str().unwrap_or("HubSpot refused the contact").to_string();
                        for id in e["context"]["ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                            answers.insert(id.to_string(), Err(HubSpotError::Status { status, category: category.clone(), message: message.clone() }));
                        }
                    }
                }
                Err(HubSpotError::Status { status, .. }) if (400..500).contains(&status) && ![401, 403, 404, 429].contains(&status) => {
                    let mut items = items;
                    let back = items.split_off(items.len() / 2);
                    answers.extend(self.upsert_all(items, retry).await);
                    answers.extend(self.upsert_all(back, retry).await);
                }
                Err(e) => {
                    for (sub, _) in &items {
                        answers.insert(sub.clone(), Err(e.clone()));
                    }
                }
            }
            answers
        })
    }

    async fn create_one(&self, sub: &str, props: &Map<String, Value>, retry: Retry) -> Result<Contact, HubSpotError> {
        let mut p = props.clone();
        p.insert(self.inner.id_property.clone(), json!(sub));
        self.create(Value::Object(p), retry).await
    }

    /// Reads a contact by record id (merged ids resolve to the surviving record).
    pub async fn read_id(&self, id: &str, retry: Retry) -> Result<Option<Contact>, HubSpotError> {
        let path = format!("/crm/v3/objects/contacts/{}?properties={}", encode(id), self.properties().join(","));
        match self.call(Method::GET, &path, None, retry).await {
            Ok((_, v)) => Ok(self.contact_from(&v)),
            Err(HubSpotError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a contact; a 409 comes back as `Status{409}` with the existing id in its message.
    pub async fn create(&self, props: Value, retry: Retry) -> Result<Contact, HubSpotError> {
        let (_, v) = self.call(Method::POST, "/crm/v3/objects/contacts", Some(&json!({ "properties": props })), retry).await?;
        self.contact_from(&v).ok_or_else(|| HubSpotError::Unreachable("create answered without an id".into()))
    }

    /// Updates a contact by record id (never by email).
    pub async fn update(&self, id: &str, props: Value, retry: Retry) -> Result<Contact, HubSpotError> {
        self.update_noting(id, props, retry, &mut false).await
    }

    /// [`HubSpot::update`], setting `unknown` when an attempt may still land (see [`HubSpot::call_noting`]).
    pub async fn update_noting(&self, id: &str, props: Value, retry: Retry, unknown: &mut bool) -> Result<Contact, HubSpotError> {
        let path = format!("/crm/v3/objects/contacts/{}", encode(id));
        let (_, v) = self.call_noting(Method::PATCH, &path, Some(&json!({ "properties": props })), retry, unknown).await?;
        self.contact_from(&v).ok_or_else(|| HubSpotError::Unreachable("update answered without an id".into()))
    }

    /// Merges `other` into `primary`; answers the surviving record's id.
    pub async fn merge(&self, primary: &str, other: &str, retry: Retry) -> Result<String, HubSpotError> {
        let body = json!({ "primaryObjectId": primary, "objectIdToMerge": other });
        let (_, v) = self.call(Method::POST, "/crm/v3/objects/contacts/merge", Some(&body), retry).await?;
        Ok(v["id"].as_str().unwrap_or(primary).to_string())
    }

    /// A visitor identification token for the chat widget.
    pub async fn chat_token(&self, email: &str, first: Option<&str>, last: Option<&str>, retry: Retry) -> Result<String, HubSpotError> {
        let body = json!({ "email": email, "firstName": first, "lastName": last });
        let (_, v) = self.call(Method::POST, "/visitor-identification/v3/tokens/create", Some(&body), retry).await?;
        v["token"].as_str().map(str::to_string).ok_or_else(|| HubSpotError::Unreachable("no token in the answer".into()))
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_spends_its_window_and_follows_hubspots_remaining_count() {
        let now = Instant::now();
        let mut l = Limiter { max: 3, sent: VecDeque::new(), blocked_until: None, strikes: 0 };
        assert!(l.try_take(now).is_none() && l.try_take(now).is_none() && l.try_take(now).is_none());
        let wait = l.try_take(now).expect("the window is full");
        assert!(wait > INTERVAL && wait <= INTERVAL + MARGIN);
        assert!(l.try_take(now + INTERVAL + MARGIN).is_none(), "the window rolls");

        let mut l = Limiter { max: 10, sent: VecDeque::new(), blocked_until: None, strikes: 0 };
        l.observe(Some(5), Some(1), now);
        assert_eq!(l.max, 5);
        assert!(l.try_take(now).is_none());
        assert!(l.try_take(now).is_some(), "HubSpot said only one call was left");
    }

    #[test]
    fn the_existing_id_is_read_from_hubspots_conflict_message() {
        let e = HubSpotError::Status { status: 409, category: Some("CONFLICT".into()), message: "Contact already exists. Existing ID: 5101".into() };
        assert_eq!(e.existing_id().as_deref(), Some("5101"));
        let e = HubSpotError::Status { status: 409, category: None, message: "something else".into() };
        assert_eq!(e.existing_id(), None);
    }

    #[test]
    fn path_values_are_percent_encoded() {
        assert_eq!(encode("a+b@x.io"), "a%2Bb%40x.io");
        assert_eq!(encode("u_42"), "u_42");
    }
}
