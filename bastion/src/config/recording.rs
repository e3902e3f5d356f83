//! The `[recording]` section: which write-once store keeps recordings, and
//! the local spool in front of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecording {
    /// `worm` (local write-once directory) or `s3`.
    store: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    spool_dir: Option<Spanned<String>>,
    spool_limit: Option<Spanned<String>>,
    chunk_bytes: Option<Spanned<String>>,
    flush_bytes: Option<Spanned<String>>,
    chunk_interval: Option<Spanned<String>>,
    s3: Option<Spanned<RawS3>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    bucket: Spanned<String>,
    #[serde(default)]
    prefix: String,
    region: Option<String>,
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    path_style: bool,
    retention_days: Option<Spanned<u32>>,
    /// Files holding static credentials; without them the default AWS chain
    /// (environment, instance role) is used.
    access_key_id_file: Option<Spanned<String>>,
    secret_access_key_file: Option<Spanned<String>>,
}

/// Where recordings go.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub store: StoreConfig,
    /// Local spool: chunks wait here (fsynced) until the store confirmed them.
    pub spool_dir: PathBuf,
    /// Past this many bytes in the spool, new sessions are refused.
    pub spool_limit_bytes: u64,
    /// A chunk (one store object, one link of the hash chain) is sealed at this size…
    pub chunk_bytes: usize,
    /// The open chunk is fsynced whenever this much was appended since the
    /// last fsync: what a machine crash can take, whatever `chunk_bytes` is.
    pub flush_bytes: usize,
    /// …or this long after its first event.
    pub chunk_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A local write-once directory (the embedded default).
    Worm {
        dir: PathBuf,
    },
    S3(S3StoreConfig),
}

/// The S3 store as configured: the recorder's settings, whose credentials
/// are read from these files when the store opens (never kept in the config).
#[derive(Debug, Clone)]
pub struct S3StoreConfig {
    /// Bucket, prefix, region, endpoint, path style, retention; no credentials.
    pub s3: recorder::store::s3::S3Config,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
}

impl RecordingConfig {
    /// The local directory recordings live in, for the embedded store.
    pub fn worm_dir(&self) -> Option<&Path> {
        match &self.store {
            StoreConfig::Worm { dir } => Some(dir),
            StoreConfig::S3(_) => None,
        }
    }
}

/// Parses sizes like `256KiB`, `2GiB`, `500MB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like \"256KiB\" or \"2GiB\""))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a size unit; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ));
        }
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

pub(super) fn parse_recording(
    lines: &Lines<'_>,
    raw: Option<&Spanned<RawRecording>>,
    base_dir: &Path,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<RecordingConfig, ConfigError> {
    let mut cfg = RecordingConfig {
        store: StoreConfig::Worm {
            dir: base_dir.join("recordings"),
        },
        spool_dir: base_dir.join("spool"),
        spool_limit_bytes: 2 << 30,
        chunk_bytes: 4 << 20,
        flush_bytes: 256 << 10,
        chunk_interval: Duration::from_secs(1),
    };
    let Some(raw) = raw else {
        return Ok(cfg);
    };
    let r = raw.get_ref();
    if let Some(v) = &r.spool_dir {
        cfg.spool_dir = path(v);
    }
    parse_sizes(lines, r, &mut cfg)?;
    if let Some(v) = &r.chunk_interval {
        cfg.chunk_interval = humantime::parse_duration(v.get_ref())
            .map_err(|e| lines.error("recording.chunk_interval", v, format!("not a duration ({e})")))?;
        if cfg.chunk_interval.is_zero() || cfg.chunk_interval > Duration::from_secs(60) {
            return Err(lines.error(
                "recording.chunk_interval",
                v,
                "must be above zero and at most 60s: a crash loses at most one chunk",
            ));
        }
    }
    cfg.store = parse_store(lines, r, base_dir, path)?;
    Ok(cfg)
}

/// `spool_limit`, `chunk_bytes` and `flush_bytes` (not above the chunk size).
fn parse_sizes(lines: &Lines<'_>, r: &RawRecording, cfg: &mut RecordingConfig) -> Result<(), ConfigError> {
    let size = |key: &str, v: &Spanned<String>| {
        parse_size(v.get_ref()).map_err(|e| lines.error(format!("recording.{key}"), v, e))
    };
    if let Some(v) = &r.spool_limit {
        cfg.spool_limit_bytes = size("spool_limit", v)?;
    }
    if let Some(v) = &r.chunk_bytes {
        let n = size("chunk_bytes", v)?;
        if !(4096..=(64 << 20)).contains(&n) {
            return Err(lines.error("recording.chunk_bytes", v, "must be between 4KiB and 64MiB"));
        }
        cfg.chunk_bytes = n as usize;
    }
    if let Some(v) = &r.flush_bytes {
        let n = size("flush_bytes", v)?;
        if !(4096..=(64 << 20)).contains(&n) {
            return Err(lines.error("recording.flush_bytes", v, "must be between 4KiB and 64MiB"));
        }
        if n > cfg.chunk_bytes as u64 {
            let chunk = r.chunk_bytes.as_ref().map_or("4MiB", |c| c.get_ref().as_str());
            return Err(lines.error(
                "recording.flush_bytes",
                v,
                format!(
                    "must not be larger than chunk_bytes ({chunk}), since a chunk is fsynced whole when it is sealed: lower flush_bytes or raise chunk_bytes"
                ),
            ));
        }
        cfg.flush_bytes = n as usize;
    } else {
        // Small chunks are fsynced whole when sealed, before any flush is due.
        cfg.flush_bytes = cfg.flush_bytes.min(cfg.chunk_bytes);
    }
    Ok(())
}

/// `recording.store`: `worm` (the default) or `s3` with its `[recording.s3]`.
fn parse_store(
    lines: &Lines<'_>,
    r: &RawRecording,
    base_dir: &Path,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<StoreConfig, ConfigError> {
    let kind = r.store.as_ref().map(|s| s.get_ref().as_str()).unwrap_or("worm");
    match kind {
        "worm" => {
            if let Some(at) = &r.s3 {
                return Err(lines.error("recording.s3", at, "a [recording.s3] table needs store = \"s3\""));
            }
            Ok(StoreConfig::Worm {
                dir: r.dir.as_ref().map(path).unwrap_or_else(|| base_dir.join("recordings")),
            })
        }
        "s3" => {
            let Some(s3) = &r.s3 else {
                let at = r.store.as_ref().expect("s3 was named");
                return Err(lines.error("recording.store", at, "store = \"s3\" needs a [recording.s3] table"));
            };
            Ok(StoreConfig::S3(parse_s3(lines, s3.get_ref(), path)?))
        }
        other => {
            let at = r.store.as_ref().expect("named");
            Err(lines.error(
                "recording.store",
                at,
                format!("`{other}` is not a store; use \"worm\" (local write-once directory) or \"s3\""),
            ))
        }
    }
}

/// `[recording.s3]`: the recorder's S3 settings, credentials left to files.
fn parse_s3(
    lines: &Lines<'_>,
    s: &RawS3,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<S3StoreConfig, ConfigError> {
    if s.bucket.get_ref().is_empty() {
        return Err(lines.error("recording.s3.bucket", &s.bucket, "name the bucket"));
    }
    let retention_days = match &s.retention_days {
        None => 365,
        Some(d) if *d.get_ref() == 0 => {
            return Err(lines.error(
                "recording.s3.retention_days",
                d,
                "must be at least 1: recordings are kept under COMPLIANCE retention",
            ));
        }
        Some(d) => *d.get_ref(),
    };
    if let Some(e) = &s.endpoint
        && !(e.get_ref().starts_with("https://") || e.get_ref().starts_with("http://"))
    {
        return Err(lines.error("recording.s3.endpoint", e, "must be an http:// or https:// URL"));
    }
    Ok(S3StoreConfig {
        s3: recorder::store::s3::S3Config {
            bucket: s.bucket.get_ref().clone(),
            prefix: s.prefix.clone(),
            region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
            endpoint: s.endpoint.as_ref().map(|e| e.get_ref().clone()),
            path_style: s.path_style,
            retention_days,
            access_key_id: None,
            secret_access_key: None,
        },
        access_key_id_file: s.access_key_id_file.as_ref().map(path),
        secret_access_key_file: s.secret_access_key_file.as_ref().map(path),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").unwrap_err().contains("not a size unit"));
        assert!(parse_size("99999999999TiB").unwrap_err().contains("too large"));
    }
}
