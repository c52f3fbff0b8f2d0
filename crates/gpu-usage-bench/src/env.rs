//! The bench's surroundings: its own databases (`gu_bench_*`, created,
//! migrated and dropped), the release binaries it starts, and what it reads
//! about processes from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use gpu_usage_core::settings::DatabaseSettings;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MySql,
    Sqlite,
}

/// Where things are, shared by every figure.
pub struct Env {
    pub mysql: String,
    pub redis: String,
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub port_base: u16,
    counter: AtomicU32,
    ports: AtomicU32,
}

impl Env {
    pub fn new(mysql: String, redis: String, port_base: u16) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let bin_dir = exe
            .parent()
            .context("this binary has no directory")?
            .to_path_buf();
        let work_dir = std::env::temp_dir().join(format!("gu_bench_{}", std::process::id()));
        std::fs::create_dir_all(&work_dir)?;
        Ok(Self {
            mysql: mysql.trim_end_matches('/').to_owned(),
            redis,
            bin_dir,
            work_dir,
            port_base,
            counter: AtomicU32::new(0),
            ports: AtomicU32::new(0),
        })
    }

    /// A release binary built beside this one.
    pub fn bin(&self, name: &str) -> Result<PathBuf> {
        let p = self.bin_dir.join(name);
        if !p.exists() {
            bail!(
                "{} is missing: build it with cargo build --release -p gpu-usage-api -p gpu-usage-worker -p gpu-usage",
                p.display()
            );
        }
        Ok(p)
    }

    /// A fresh pair of ports (API, worker metrics).
    pub fn ports(&self) -> (u16, u16) {
        let n = self.ports.fetch_add(1, Ordering::Relaxed) as u16;
        (self.port_base + 2 * n, self.port_base + 2 * n + 1)
    }

    pub fn unique(&self, tag: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("gu_bench_{}_{tag}_{n}", std::process::id())
    }

    /// A new, migrated, empty database.
    pub async fn create_db(&self, backend: Backend, tag: &str) -> Result<BenchDb> {
        let name = self.unique(tag);
        let url = match backend {
            Backend::MySql => {
                let admin = connect(&self.mysql, 2).await?;
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                    ))
                    .await?;
                admin.close().await.ok();
                format!("{}/{name}", self.mysql)
            }
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                self.work_dir.join(format!("{name}.db")).display()
            ),
        };
        let db = connect(&url, 10).await?;
        gpu_usage_core::migrate(&db)
            .await
            .with_context(|| format!("migrating {name}"))?;
        Ok(BenchDb {
            backend,
            name,
            url,
            db,
            mysql: self.mysql.clone(),
        })
    }

    /// Drops what this run left behind (a figure that failed half-way).
    pub async fn drop_own(&self) -> Result<()> {
        self.drop_matching(|pid| pid == std::process::id()).await
    }

    /// Drops `gu_bench_<pid>_*` databases of bench processes that are gone
    /// (a run killed half-way).
    pub async fn sweep_leftovers(&self) -> Result<()> {
        self.drop_matching(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .await
    }

    async fn drop_matching(&self, doomed: impl Fn(u32) -> bool) -> Result<()> {
        let admin = connect(&self.mysql, 2).await?;
        let rows = admin
            .query_all_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT CAST(SCHEMA_NAME AS CHAR) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'gu\\_bench\\_%'",
            ))
            .await?;
        for r in rows {
            let name: String = r.try_get("", "n")?;
            let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && doomed(pid)
            {
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await?;
                eprintln!("dropped database {name}");
            }
        }
        admin.close().await.ok();
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.work_dir).ok();
    }
}

pub fn settings(url: &str, max_connections: u32) -> DatabaseSettings {
    DatabaseSettings {
        url: SecretString::from(url.to_owned()),
        max_connections,
        connect_timeout_secs: 10,
        acquire_timeout_secs: 120,
    }
}

/// The service's own way of connecting (UTC sessions, WAL on SQLite).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    gpu_usage_core::db::connect(&settings(url, max_connections))
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// One of the bench's databases.
pub struct BenchDb {
    pub backend: Backend,
    pub name: String,
    pub url: String,
    pub db: DatabaseConnection,
    mysql: String,
}

impl BenchDb {
    pub async fn exec(&self, sql: &str) -> Result<u64> {
        let r = self
            .db
            .execute_unprepared(sql)
            .await
            .with_context(|| sql.chars().take(300).collect::<String>())?;
        Ok(r.rows_affected())
    }

    pub async fn scalar_i64(&self, sql: &str) -> Result<i64> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await?
            .context("no row")?;
        let v: Option<i64> = row.try_get_by_index(0)?;
        Ok(v.unwrap_or(0))
    }

    /// Rows in the three statistics tables.
    pub async fn stats_rows(&self) -> Result<i64> {
        let mut n = 0;
        for t in [
            "gpu_usage_statistics_minute",
            "gpu_usage_statistics_hourly",
            "gpu_usage_statistics_daily",
        ] {
            n += self
                .scalar_i64(&format!("SELECT CAST(COUNT(*) AS SIGNED) FROM {t}"))
                .await?;
        }
        Ok(n)
    }

    /// Closes the pool and drops the database.
    pub async fn drop_db(self) -> Result<()> {
        self.db.clone().close().await.ok();
        match self.backend {
            Backend::MySql => {
                let admin = connect(&self.mysql, 2).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
                    .await?;
                admin.close().await.ok();
            }
            Backend::Sqlite => {
                let path = self
                    .url
                    .trim_start_matches("sqlite://")
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    std::fs::remove_file(format!("{path}{suffix}")).ok();
                }
                // The job locks' files beside the database.
                if let Some(dir) = Path::new(&path).parent()
                    && let Ok(entries) = std::fs::read_dir(dir)
                {
                    for e in entries.flatten() {
                        if e.file_name().to_string_lossy().starts_with(&self.name) {
                            std::fs::remove_file(e.path()).ok();
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A release binary of the service, running; killed when dropped.
pub struct Service {
    child: Child,
    pub pid: u32,
    pub api: Option<String>,
    pub metrics: Option<String>,
    pub log: PathBuf,
}

impl Service {
    /// Starts `bin` with `args` on the database `url`: its API on one port
    /// and its metrics port on the next, logs to a file, cwd the work dir
    /// (built-in configuration defaults plus `extra`).
    pub fn start(
        env: &Env,
        bin: &str,
        args: &[&str],
        url: &str,
        extra: &[(&str, String)],
    ) -> Result<Service> {
        let (api_port, worker_port) = env.ports();
        let log = env.work_dir.join(format!("{}.log", env.unique(bin)));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env.bin(bin)?);
        cmd.args(args)
            .current_dir(&env.work_dir)
            .env("GPU_USAGE_CONFIG_DIR", env.work_dir.join("no-config"))
            .env("GPU_USAGE__DATABASE__URL", url)
            .env("GPU_USAGE__API__PORT", api_port.to_string())
            .env("GPU_USAGE__WORKER__HTTP_PORT", worker_port.to_string())
            .env("GPU_USAGE__WORKER__INSTANCE_ID", format!("bench-{bin}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
        let pid = child.id();
        let serves_api = bin != "gpu-usage-worker";
        let serves_metrics = bin != "gpu-usage-api";
        Ok(Service {
            child,
            pid,
            api: serves_api.then(|| format!("http://127.0.0.1:{api_port}")),
            metrics: (serves_metrics && args.first().is_none_or(|a| *a == "run"))
                .then(|| format!("http://127.0.0.1:{worker_port}")),
            log,
        })
    }

    /// Waits until `<base>/healthz` answers; the service, ready.
    pub async fn ready(mut self) -> Result<Service> {
        let base = self
            .api
            .clone()
            .or_else(|| self.metrics.clone())
            .context("nothing to probe")?;
        let client = reqwest::Client::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{status}: see {}", self.log.display());
            }
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(self);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("not ready after 60 s: see {}", self.log.display())
    }

    /// Waits for a one-shot command to end, sampling its peak RSS.
    pub async fn wait_exit(&mut self) -> Result<(std::process::ExitStatus, f64)> {
        let mut peak = 0.0f64;
        loop {
            if let Some(kib) = status_kib(self.pid, "VmHWM:") {
                peak = peak.max(kib / 1024.0);
            }
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, peak));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmRSS:").unwrap_or(f64::NAN) / 1024.0
    }

    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM:").unwrap_or(f64::NAN) / 1024.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
        }
        self.child.wait().ok();
    }
}

/// A field of `/proc/<pid>/status` in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn self_peak_rss_mib() -> f64 {
    status_kib(std::process::id(), "VmHWM:").unwrap_or(f64::NAN) / 1024.0
}

pub fn reset_self_peak() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// The MariaDB server's pid, if it runs here (for its CPU time).
pub fn mariadbd_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        matches!(comm.trim(), "mariadbd" | "mysqld").then_some(pid)
    })
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU ticks of a process sampled every `every`, with wall-clock times.
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<(SystemTime, u64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl CpuSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(t) = cpu_ticks(pid)
                    && let Ok(mut v) = s.lock()
                {
                    v.push((SystemTime::now(), t));
                }
                std::thread::sleep(every);
            }
        });
        Self {
            samples,
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> Vec<(SystemTime, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().ok();
        }
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// CPU ticks spent in `[from, to]`, from the samples around it.
pub fn ticks_between(samples: &[(SystemTime, u64)], from: SystemTime, to: SystemTime) -> u64 {
    let at = |t: SystemTime, before: bool| -> u64 {
        if before {
            samples
                .iter()
                .rev()
                .find(|(s, _)| *s <= t)
                .or(samples.first())
                .map_or(0, |x| x.1)
        } else {
            samples
                .iter()
                .find(|(s, _)| *s >= t)
                .or(samples.last())
                .map_or(0, |x| x.1)
        }
    };
    at(to, false).saturating_sub(at(from, true))
}
