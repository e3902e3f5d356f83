//! The S3 store: recordings as objects under Object Lock in COMPLIANCE mode,
//! so that nobody — not the bastion, not an administrator, not AWS support —
//! can delete or change them before their retention ends.
//!
//! Every `put` is a single PutObject that carries the whole promise:
//! COMPLIANCE retention until now + `retention_days`, the SHA-256 of the
//! bytes (`x-amz-checksum-sha256`, so the server refuses bytes that arrive
//! damaged) and `If-None-Match: *` (so an existing key is never overwritten,
//! not even by a new version). [`S3Store::check`] verifies at start-up that
//! the bucket can keep that promise: versioning Enabled and Object Lock on.
//!
//! Things this code never asks for, because some S3 servers (moto among
//! them) would accept them although they break the promise: shortening a
//! retention, switching COMPLIANCE to GOVERNANCE, a retain-until in the past,
//! suspending versioning.
//!
//! Servers without conditional writes: AWS S3 and moto (5.x) answer 412 to
//! `If-None-Match: *` on an existing key. An on-prem server that ignores the
//! header would store the second put as a new version instead; the first
//! version is still locked and listed in the version history, so nothing is
//! lost, but the overwrite is not reported as [`StoreError::Exists`]. A
//! HeadObject before the put would not close that gap (another writer can
//! come between the two), so it is not done.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, ObjectLockEnabled, ObjectLockMode};
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Retention, Store, StoreError};

/// A down S3 must fail fast enough for the local spool to take over, and a
/// hung connection must not hold an upload slot for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole operation, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest retention accepted (100 years), so `now + days` cannot overflow
/// and a typo of extra digits is caught at start-up instead of locking
/// objects for millennia.
const MAX_RETENTION_DAYS: u32 = 36_500;

/// Where and how the S3 store writes.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `recordings` (a `/` is added);
    /// empty for the bucket root.
    pub prefix: String,
    pub region: String,
    /// Endpoint URL for S3-compatible servers (on-prem, moto); `None`: AWS.
    pub endpoint: Option<String>,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`:
    /// needed by most on-prem servers and moto.
    pub path_style: bool,
    /// COMPLIANCE retention of each object, in days (1 to 36500).
    pub retention_days: u32,
    /// Static credentials; both `None`: the default AWS credential chain
    /// (environment, profile, web identity, ECS, EC2 instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

// By hand so that the secret key never reaches a log line through `{:?}`.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("retention_days", &self.retention_days)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A write-once store on an S3 bucket with Object Lock.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Normalised: empty, or ends with `/` and has no leading `/`.
    prefix: String,
    retention: Duration,
}

impl S3Store {
    /// Builds the client. Makes no request: [`Store::check`] is what proves
    /// the bucket is reachable and locked. Async because the default
    /// credential chain is resolved here.
    pub async fn new(config: S3Config) -> Result<S3Store, StoreError> {
        if config.bucket.is_empty() {
            return Err(StoreError::Misconfigured("the S3 bucket name is empty".into()));
        }
        if config.region.is_empty() {
            return Err(StoreError::Misconfigured(format!(
                "no region for S3 bucket {}: set one (any value, e.g. us-east-1, for on-prem servers)",
                config.bucket
            )));
        }
        // A retention of 0 days would ask for a retain-until of "now", in the
        // past by the time it arrives: real S3 refuses it, moto accepts it.
        if config.retention_days == 0 || config.retention_days > MAX_RETENTION_DAYS {
            return Err(StoreError::Misconfigured(format!(
                "retention of {} days for S3 bucket {}: it must be between 1 and {MAX_RETENTION_DAYS}",
                config.retention_days, config.bucket
            )));
        }
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .timeout_config(timeouts);
        match (config.access_key_id, config.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "bastion-config"));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Misconfigured(format!(
                    "S3 bucket {}: give both access_key_id and secret_access_key, or neither (default AWS credentials)",
                    config.bucket
                )));
            }
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.path_style);
        if let Some(endpoint) = config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            prefix: normalise_prefix(&config.prefix),
            retention: Duration::from_secs(u64::from(config.retention_days) * 86_400),
        })
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// After a 412: whether the object already under `key` is the one we
    /// were writing, locked in COMPLIANCE mode. That happens when an earlier
    /// attempt of this very put landed but its answer was lost (the SDK
    /// retries a timed-out request, the uploader retries after a crash):
    /// the write has happened, so it is a success, not a collision.
    async fn holds_same_locked_object(&self, full_key: &str, checksum: &str) -> Result<bool, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.error(e, "HeadObject", full_key))?;
        Ok(head.checksum_sha256() == Some(checksum) && head.object_lock_mode() == Some(&ObjectLockMode::Compliance))
    }

    /// Maps an SDK error to the store's error, naming the operation and key.
    fn error<E>(&self, err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>, op: &str, key: &str) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let place = format!("s3://{}/{key}", self.bucket);
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code();
                let detail = match code {
                    Some(code) => format!(
                        "{op} {place}: HTTP {status} {code}: {}",
                        service.err().message().unwrap_or("")
                    ),
                    // No S3 error code: an answer the SDK could not parse
                    // (a proxy's page, a non-conforming server); the SDK's
                    // own description says what was wrong with it.
                    None => format!("{op} {place}: HTTP {status}: {}", DisplayErrorContext(&err)),
                };
                match classify(status, code) {
                    Class::Exists => StoreError::Exists(place),
                    Class::NotFound => StoreError::NotFound(place),
                    Class::NoBucket => StoreError::Misconfigured(format!(
                        "bucket {} does not exist ({op} answered {status})",
                        self.bucket
                    )),
                    Class::Unavailable => StoreError::Unavailable(detail),
                    Class::Refused => StoreError::Refused(detail),
                }
            }
            // The request was never built (bad input on our side): retrying
            // cannot help.
            SdkError::ConstructionFailure(_) => {
                StoreError::Refused(format!("{op} {place}: {}", DisplayErrorContext(&err)))
            }
            // Timeouts, refused or reset connections, TLS failures, and
            // answers that are not S3 answers (a proxy's error page).
            _ => StoreError::Unavailable(format!("{op} {place}: {}", DisplayErrorContext(&err))),
        }
    }
}

/// `recordings`, `/recordings/` → `recordings/`; empty stays empty.
fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// What an S3 error answer means for the store.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Exists,
    NotFound,
    NoBucket,
    Unavailable,
    Refused,
}

/// Pure, so every mapping is unit-tested without a server.
fn classify(status: u16, code: Option<&str>) -> Class {
    match (status, code) {
        (_, Some("NoSuchBucket")) => Class::NoBucket,
        (412, _) | (_, Some("PreconditionFailed")) => Class::Exists,
        // A concurrent conditional write to the same key is in flight: S3
        // asks to retry, and the retry then sees 412 or succeeds.
        (409, Some("ConditionalRequestConflict")) => Class::Unavailable,
        (404, _) | (_, Some("NoSuchKey")) => Class::NotFound,
        // Throttling and "try again" answers that come as 4xx.
        (408 | 429, _) | (_, Some("SlowDown" | "RequestTimeout" | "RequestTimeTooSkewed")) => Class::Unavailable,
        (500..=599, _) => Class::Unavailable,
        // BadDigest (checksum mismatch), AccessDenied, InvalidRequest
        // (e.g. a bucket without Object Lock), and the rest.
        _ => Class::Refused,
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::Refused("an empty key".into()));
        }
        // Checked here as well as by the server: an object stored with a
        // digest that does not match its bytes would be locked, unremovable
        // and unverifiable for the whole retention. Some S3-compatible
        // servers (moto among them) store the given checksum unverified.
        let actual: [u8; 32] = Sha256::digest(&bytes).into();
        if actual != sha256 {
            return Err(StoreError::Refused(format!(
                "s3://{}/{}: the SHA-256 given does not match the {} bytes to store",
                self.bucket,
                self.object_key(key),
                bytes.len()
            )));
        }
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256);
        let full_key = self.object_key(key);
        let until = DateTime::from(SystemTime::now() + self.retention);
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .body(ByteStream::from(bytes))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .if_none_match("*")
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(err) => match self.error(err, "PutObject", &full_key) {
                StoreError::Exists(place) => {
                    if self.holds_same_locked_object(&full_key, &checksum).await? {
                        Ok(())
                    } else {
                        Err(StoreError::Exists(place))
                    }
                }
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let full_key = self.object_key(key);
        // With checksum mode on, the SDK checks the bytes read against the
        // SHA-256 stored at put time.
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.error(e, "GetObject", &full_key))?;
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "GetObject s3://{}/{full_key}: reading the body: {}",
                self.bucket,
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(body.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full_prefix = self.object_key(prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(e, "ListObjectsV2", &full_prefix))?;
            for object in page.contents() {
                // Every key S3 returns starts with the prefix we asked for.
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        let full_key = self.object_key(key);
        // HeadObject rather than GetObjectRetention: it carries the same
        // mode and date (x-amz-object-lock-*, given to callers allowed
        // s3:GetObjectRetention) and every S3 server implements it, where
        // GetObjectRetention is missing or answers malformed XML on some
        // (moto 5.1 / 5.2).
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.error(e, "HeadObject", &full_key))?;
        let Some(mode) = head.object_lock_mode() else {
            return Err(StoreError::Misconfigured(format!(
                "s3://{}/{full_key} shows no Object Lock retention: it can be deleted, or the credentials lack \
                 s3:GetObjectRetention",
                self.bucket
            )));
        };
        let until = head
            .object_lock_retain_until_date()
            .map(|d| SystemTime::try_from(*d))
            .transpose()
            .map_err(|e| {
                StoreError::Refused(format!(
                    "HeadObject s3://{}/{full_key}: retain-until date out of range: {e}",
                    self.bucket
                ))
            })?;
        Ok(Retention {
            immutable: mode == &ObjectLockMode::Compliance,
            mode: mode.as_str().to_owned(),
            until,
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        let bucket = &self.bucket;
        let mut missing = Vec::new();

        match self.client.get_bucket_versioning().bucket(bucket).send().await {
            Ok(out) => match out.status() {
                Some(BucketVersioningStatus::Enabled) => {}
                Some(other) => missing.push(format!(
                    "bucket {bucket} has versioning {}, not Enabled",
                    other.as_str()
                )),
                None => missing.push(format!(
                    "bucket {bucket} has versioning off: Object Lock needs it Enabled"
                )),
            },
            Err(err) => return Err(self.check_error(err, "GetBucketVersioning", "s3:GetBucketVersioning")),
        }

        let no_lock = format!(
            "bucket {bucket} has no Object Lock configuration: create it with --object-lock-enabled-for-bucket"
        );
        match self.client.get_object_lock_configuration().bucket(bucket).send().await {
            Ok(out) => {
                let enabled = out.object_lock_configuration().and_then(|c| c.object_lock_enabled());
                if enabled != Some(&ObjectLockEnabled::Enabled) {
                    missing.push(no_lock);
                }
            }
            Err(err) if err.code() == Some("ObjectLockConfigurationNotFoundError") => missing.push(no_lock),
            Err(err) => {
                return Err(self.check_error(err, "GetObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"));
            }
        }

        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Misconfigured(missing.join("; ")))
        }
    }

    fn describe(&self) -> String {
        let prefix = self.prefix.trim_end_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }
}

impl S3Store {
    /// At start-up a refusal is a configuration problem (permissions), not
    /// something the object did: say which permission is missing.
    fn check_error<E>(
        &self,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        op: &str,
        permission: &str,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.error(err, op, "") {
            StoreError::Refused(detail) => StoreError::Misconfigured(format!(
                "{detail} (the bastion's credentials need {permission} on bucket {})",
                self.bucket
            )),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_normalised_to_a_folder() {
        assert_eq!(normalise_prefix(""), "");
        assert_eq!(normalise_prefix("/"), "");
        assert_eq!(normalise_prefix("recordings"), "recordings/");
        assert_eq!(normalise_prefix("/a/b/"), "a/b/");
    }

    #[test]
    fn error_answers_map_to_store_errors() {
        assert_eq!(classify(412, Some("PreconditionFailed")), Class::Exists);
        assert_eq!(classify(409, Some("ConditionalRequestConflict")), Class::Unavailable);
        assert_eq!(classify(404, Some("NoSuchKey")), Class::NotFound);
        assert_eq!(classify(404, Some("NoSuchBucket")), Class::NoBucket);
        assert_eq!(classify(503, Some("SlowDown")), Class::Unavailable);
        assert_eq!(classify(500, None), Class::Unavailable);
        assert_eq!(classify(429, None), Class::Unavailable);
        assert_eq!(classify(400, Some("RequestTimeout")), Class::Unavailable);
        // Real S3's answer to bytes that do not match x-amz-checksum-sha256.
        assert_eq!(classify(400, Some("BadDigest")), Class::Refused);
        assert_eq!(classify(403, Some("AccessDenied")), Class::Refused);
        assert_eq!(classify(400, Some("InvalidRequest")), Class::Refused);
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let config = S3Config {
            bucket: "rec".into(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            retention_days: 1,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-very-secret".into()),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[tokio::test]
    async fn bad_configurations_are_refused_before_any_request() {
        let base = S3Config {
            bucket: "rec".into(),
            prefix: "recordings".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            path_style: true,
            retention_days: 30,
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
        };
        let zero = S3Config {
            retention_days: 0,
            ..base.clone()
        };
        assert!(matches!(S3Store::new(zero).await, Err(StoreError::Misconfigured(m)) if m.contains("between 1")));
        let half = S3Config {
            secret_access_key: None,
            ..base.clone()
        };
        assert!(matches!(S3Store::new(half).await, Err(StoreError::Misconfigured(m)) if m.contains("both")));
        let store = S3Store::new(base).await.expect("valid config");
        assert_eq!(store.describe(), "s3://rec/recordings");
        assert_eq!(store.object_key("s1/0001"), "recordings/s1/0001");
    }
}
