//! A controllable TCP proxy for fault-injection tests: put it between the
//! services under test and MariaDB (or anything else speaking TCP) and
//! break their connections on command.
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards every accepted
//! connection to the upstream address. Controls, usable at any time and
//! from any task:
//!
//! - [`Proxy::cut_all`]: close every open connection now (both sides, as a
//!   server that went away would: the client sees its socket closed in the
//!   middle of whatever it was doing).
//! - [`Proxy::refuse`]: accept new connections and close them at once,
//!   until told otherwise (what a load balancer in front of a database
//!   that is down does).
//! - [`Proxy::random_drops`]: drop connections at random points, after a
//!   random number of forwarded bytes (often in the middle of a packet) or
//!   after a random delay, closing them either gracefully or with a reset.
//!   The plans are drawn from a seeded generator per connection, so a seed
//!   reproduces which connections are doomed and where (the interleaving of
//!   the tasks using them is still the scheduler's). Turning the mode on
//!   plans drops for the connections already open too; turning it off
//!   cancels the plans not yet carried out.
//!
//! [`Proxy::settings_for`] gives the [`DatabaseSettings`] of a [`TestDb`]'s
//! database through the proxy (same pool options, the URL's host and port
//! replaced); [`Proxy::to_mysql`] starts one in front of the test MariaDB
//! server ([`crate::mysql_server_url`]).
//!
//! Dropping the proxy stops it and closes every connection it forwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gpu_usage_core::settings::DatabaseSettings;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::TestDb;

/// The random-drop mode: which connections die, and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomDrops {
    /// Seeds every connection's plan (together with the connection's
    /// number).
    pub seed: u64,
    /// Share of connections that are dropped at some point, `0.0..=1.0`.
    pub probability: f64,
    /// A doomed connection dies after a number of bytes in `[0, max_bytes)`
    /// (both directions counted) ...
    pub max_bytes: u64,
    /// ... or, as likely, after a delay in `[0, max_delay)`.
    pub max_delay: Duration,
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections closed on arrival while refusing.
    pub refused: u64,
    /// Connections closed by [`Proxy::cut_all`].
    pub cut: u64,
    /// Connections dropped by the random mode.
    pub dropped: u64,
    /// Connections whose upstream could not be reached.
    pub upstream_failed: u64,
    /// Connections forwarded right now.
    pub open: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
    dropped: AtomicU64,
    upstream_failed: AtomicU64,
    open: AtomicU64,
}

struct Shared {
    upstream: String,
    refusing: AtomicBool,
    /// Bumped by every [`Proxy::cut_all`].
    cuts: watch::Sender<u64>,
    random: watch::Sender<Option<RandomDrops>>,
    counters: Counters,
}

/// A TCP proxy on `127.0.0.1` in front of one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`host:port`). Needs a tokio
    /// runtime with timers and I/O (every test runtime has them).
    pub async fn start(upstream: impl Into<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream: upstream.into(),
            refusing: AtomicBool::new(false),
            cuts: watch::Sender::new(0),
            random: watch::Sender::new(None),
            counters: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// A proxy in front of the test MariaDB/MySQL server.
    pub async fn to_mysql() -> Proxy {
        Self::start(host_port(&crate::mysql_server_url())).await
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream address everything is forwarded to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        replace_host_port(url, &self.addr.to_string())
    }

    /// The URL of `t`'s database through the proxy.
    pub fn url_for(&self, t: &TestDb) -> String {
        self.url_through(t.settings.url.expose_secret())
    }

    /// `t`'s database settings (pool size and timeouts) with the URL
    /// through the proxy: connect a pool with
    /// `gpu_usage_core::db::connect(&proxy.settings_for(&t))`.
    pub fn settings_for(&self, t: &TestDb) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretString::from(self.url_for(t)),
            ..t.settings.clone()
        }
    }

    /// Closes every connection open right now.
    pub fn cut_all(&self) {
        self.shared.cuts.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// While `true`, new connections are accepted and closed at once.
    /// Connections already open are left alone (see [`Proxy::cut_all`]).
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Turns the random-drop mode on (`Some`) or off (`None`).
    pub fn random_drops(&self, mode: Option<RandomDrops>) {
        self.shared.random.send_replace(mode);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            cut: get(&c.cut),
            dropped: get(&c.dropped),
            upstream_failed: get(&c.upstream_failed),
            open: get(&c.open),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it drops them
        // and with them both sockets of every connection.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut number = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of file descriptors and the like: try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if shared.refusing.load(Ordering::SeqCst) {
                    shared.counters.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                number += 1;
                shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(forward(client, shared.clone(), number));
            }
            // Reap finished connection tasks so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Why a forwarded connection ended.
enum End {
    /// One side closed it (or failed).
    Closed,
    Cut,
    /// The random mode's plan: the byte budget ran out or the delay passed.
    Dropped {
        reset: bool,
    },
}

/// One connection's random plan.
struct Plan {
    budget: Option<u64>,
    deadline: Option<Instant>,
    reset: bool,
}

impl Plan {
    const NONE: Plan = Plan {
        budget: None,
        deadline: None,
        reset: false,
    };

    fn draw(mode: Option<RandomDrops>, number: u64, draws: &mut u64) -> Plan {
        let Some(m) = mode else { return Plan::NONE };
        *draws += 1;
        let mut rng = SplitMix64::new(
            m.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ draws.rotate_left(32),
        );
        if rng.unit() >= m.probability {
            return Plan::NONE;
        }
        let reset = rng.next().is_multiple_of(2);
        if rng.next().is_multiple_of(2) {
            Plan {
                budget: Some(rng.below(m.max_bytes.max(1))),
                deadline: None,
                reset,
            }
        } else {
            let max_ms = u64::try_from(m.max_delay.as_millis()).unwrap_or(u64::MAX);
            Plan {
                budget: None,
                deadline: Some(Instant::now() + Duration::from_millis(rng.below(max_ms.max(1)))),
                reset,
            }
        }
    }
}

async fn forward(mut client: TcpStream, shared: Arc<Shared>, number: u64) {
    let counters = &shared.counters;
    let Ok(mut upstream) = TcpStream::connect(&shared.upstream).await else {
        counters.upstream_failed.fetch_add(1, Ordering::SeqCst);
        return;
    };
    client.set_nodelay(true).ok();
    upstream.set_nodelay(true).ok();
    counters.open.fetch_add(1, Ordering::SeqCst);
    let mut cuts = shared.cuts.subscribe();
    let mut random = shared.random.subscribe();
    let mut draws = 0u64;
    let mut plan = Plan::draw(*random.borrow_and_update(), number, &mut draws);
    // Bytes that may still pass; `u64::MAX` is "no limit".
    let budget = AtomicU64::new(plan.budget.unwrap_or(u64::MAX));
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let pump = async {
            tokio::select! {
                e = copy(&mut cr, &mut uw, &budget) => e,
                e = copy(&mut ur, &mut cw, &budget) => e,
            }
        };
        tokio::pin!(pump);
        loop {
            let reset = plan.reset;
            let deadline = plan.deadline;
            // Controls first: a cut or a new plan applies before any more
            // bytes are forwarded.
            tokio::select! {
                biased;
                _ = cuts.changed() => break End::Cut,
                changed = random.changed() => {
                    if changed.is_err() {
                        break End::Closed;
                    }
                    plan = Plan::draw(*random.borrow_and_update(), number, &mut draws);
                    budget.store(plan.budget.unwrap_or(u64::MAX), Ordering::SeqCst);
                }
                () = sleep_until(deadline), if deadline.is_some() => break End::Dropped { reset },
                spent = &mut pump => {
                    break if spent { End::Dropped { reset } } else { End::Closed };
                }
            }
        }
    };
    match end {
        End::Closed => {}
        End::Cut => {
            counters.cut.fetch_add(1, Ordering::SeqCst);
        }
        End::Dropped { reset } => {
            counters.dropped.fetch_add(1, Ordering::SeqCst);
            if reset {
                // SO_LINGER 0: the close sends a reset instead of a FIN.
                client.set_zero_linger().ok();
                upstream.set_zero_linger().ok();
            }
        }
    }
    counters.open.fetch_sub(1, Ordering::SeqCst);
    drop(client);
    drop(upstream);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Copies `from` to `to` while `budget` lasts. `true` when the budget ran
/// out (the bytes that fitted were forwarded, the rest not), `false` when
/// either side closed or failed.
async fn copy<R, W>(from: &mut R, to: &mut W, budget: &AtomicU64) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let allowed = take(budget, n);
        if allowed > 0 && to.write_all(&buf[..allowed]).await.is_err() {
            return false;
        }
        if allowed < n {
            to.flush().await.ok();
            return true;
        }
    }
}

/// Takes up to `n` bytes from `budget`; how many it got.
fn take(budget: &AtomicU64, n: usize) -> usize {
    let want = u64::try_from(n).unwrap_or(u64::MAX);
    let mut got = 0;
    let _ = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        if left == u64::MAX {
            got = want;
            return Some(left);
        }
        got = want.min(left);
        Some(left - got)
    });
    usize::try_from(got).unwrap_or(n)
}

/// `host:port` of a URL such as `mysql://user:pw@host:3306/db` (port 3306
/// when it names none).
pub fn host_port(url: &str) -> String {
    let (start, end) = authority(url);
    let authority = &url[start..end];
    let hp = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if hp.starts_with('[') {
        if hp.contains("]:") {
            return hp.to_owned();
        }
        return format!("{hp}:3306");
    }
    if hp.contains(':') {
        hp.to_owned()
    } else {
        format!("{hp}:3306")
    }
}

/// `url` with the host and port of its authority replaced by `addr`
/// (user and password kept).
pub fn replace_host_port(url: &str, addr: &str) -> String {
    let (start, end) = authority(url);
    let authority = &url[start..end];
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    format!("{}{userinfo}{addr}{}", &url[..start], &url[end..])
}

/// Byte range of the URL's authority (between `://` and the path).
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    (start, end)
}

/// SplitMix64: tiny, seedable, good enough to pick drop points.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`, `n > 0`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_through_the_proxy() {
        assert_eq!(host_port("mysql://root@127.0.0.1:3306"), "127.0.0.1:3306");
        assert_eq!(host_port("mysql://u:p@db/x"), "db:3306");
        assert_eq!(
            replace_host_port("mysql://root@127.0.0.1:3306/gu_test_1", "127.0.0.1:4000"),
            "mysql://root@127.0.0.1:4000/gu_test_1"
        );
        assert_eq!(
            replace_host_port("mysql://u:p@w@db:3306/x?ssl-mode=disabled", "h:1"),
            "mysql://u:p@w@h:1/x?ssl-mode=disabled"
        );
        assert_eq!(replace_host_port("mysql://db", "h:1"), "mysql://h:1");
    }

    #[test]
    fn budgets_are_shared_and_unlimited_stays_unlimited() {
        let b = AtomicU64::new(10);
        assert_eq!(take(&b, 4), 4);
        assert_eq!(take(&b, 8), 6);
        assert_eq!(take(&b, 8), 0);
        let u = AtomicU64::new(u64::MAX);
        assert_eq!(take(&u, 1 << 20), 1 << 20);
        assert_eq!(u.load(Ordering::SeqCst), u64::MAX);
    }

    /// An upstream that echoes what it reads.
    async fn echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, task)
    }

    /// Reads until EOF or an error (a cut connection), for at most 5 s:
    /// what was read, and whether the connection ended.
    async fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Err(_) => return (out, false),
                Ok(Ok(0) | Err(_)) => return (out, true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[tokio::test]
    async fn forwards_cuts_refuses_and_drops() {
        let (upstream, _echo) = echo().await;
        let proxy = Proxy::start(upstream.to_string()).await;

        // Forwards.
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        a.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        // Cut: the open connection ends.
        proxy.cut_all();
        assert_eq!(read_to_end(&mut a).await, (vec![], true));

        // Refuse: new connections are closed at once; then allowed again.
        proxy.refuse(true);
        let mut r = TcpStream::connect(proxy.addr()).await.unwrap();
        r.write_all(b"x").await.ok();
        assert_eq!(read_to_end(&mut r).await, (vec![], true));
        proxy.refuse(false);
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        b.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).await.unwrap();

        // Random drops of every connection, after at most 3 bytes or 1 ms:
        // new connections, and the one open before the mode was set.
        proxy.random_drops(Some(RandomDrops {
            seed: 7,
            probability: 1.0,
            max_bytes: 3,
            max_delay: Duration::from_millis(1),
        }));
        for s in [&mut b, &mut TcpStream::connect(proxy.addr()).await.unwrap()] {
            s.write_all(b"0123456789").await.ok();
            assert!(read_to_end(s).await.1, "dropped");
        }
        proxy.random_drops(None);
        let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
        d.write_all(b"fine").await.unwrap();
        let mut buf = [0u8; 4];
        d.read_exact(&mut buf).await.unwrap();

        let s = proxy.stats();
        assert_eq!((s.refused, s.cut, s.dropped, s.open), (1, 1, 2, 1), "{s:?}");
    }
}
