//! Object storage for blocks, from one validated config. Flag names follow
//! Mimir's (`-blocks-storage.backend`, `-blocks-storage.s3.endpoint`, ...).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize, Serializer};

use crate::BlockError;

/// Where blocks are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A directory on local disk (default: `<data-dir>/blocks`).
    #[default]
    Filesystem,
    S3,
    Gcs,
    Azure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketConfig {
    pub backend: StorageBackend,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
    /// Attempts of a failed request to a cloud bucket beyond the first,
    /// with exponential backoff.
    pub max_retries: usize,
    /// Longest a request to a cloud bucket may take, retries included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Directory of the bucket; empty means `<data-dir>/blocks`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `host:port` or a URL; empty means AWS itself.
    pub endpoint: String,
    pub bucket_name: String,
    pub region: String,
    pub access_key_id: String,
    #[serde(serialize_with = "redacted")]
    pub secret_access_key: String,
    /// Plain HTTP to the endpoint (for local S3-compatible servers).
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket_name: String,
    /// Path of a service account JSON key; empty uses the environment's
    /// application default credentials.
    pub service_account_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    pub account_name: String,
    #[serde(serialize_with = "redacted")]
    pub account_key: String,
    pub container_name: String,
    /// Endpoint of the storage account (for Azurite and sovereign clouds);
    /// empty means `https://<account>.blob.core.windows.net`.
    pub endpoint: String,
}

fn redacted<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    if value.is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("<redacted>")
    }
}

impl Default for BucketConfig {
    fn default() -> Self {
        BucketConfig {
            backend: StorageBackend::Filesystem,
            filesystem: FilesystemConfig::default(),
            s3: S3Config::default(),
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
            max_retries: 10,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl BucketConfig {
    pub fn validate(&self) -> Result<(), String> {
        match self.backend {
            StorageBackend::Filesystem => {}
            StorageBackend::S3 => {
                if self.s3.bucket_name.is_empty() {
                    return Err("-blocks-storage.s3.bucket-name is required with the s3 backend".into());
                }
            }
            StorageBackend::Gcs => {
                if self.gcs.bucket_name.is_empty() {
                    return Err("-blocks-storage.gcs.bucket-name is required with the gcs backend".into());
                }
            }
            StorageBackend::Azure => {
                if self.azure.account_name.is_empty() || self.azure.container_name.is_empty() {
                    return Err("-blocks-storage.azure.account-name and -blocks-storage.azure.container-name are required with the azure backend".into());
                }
            }
        }
        if self.request_timeout.is_zero() {
            return Err("blocks_storage.request_timeout must be positive".into());
        }
        Ok(())
    }

    /// Opens the bucket. `default_dir` is used by the filesystem backend
    /// when no directory is configured; it is created if missing.
    pub fn open(&self, default_dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>, BlockError> {
        let retry = RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.request_timeout,
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
        };
        let client = ClientOptions::new().with_timeout(self.request_timeout);
        Ok(match self.backend {
            StorageBackend::Filesystem => {
                let dir = if self.filesystem.dir.as_os_str().is_empty() {
                    default_dir.to_path_buf()
                } else {
                    self.filesystem.dir.clone()
                };
                std::fs::create_dir_all(&dir).map_err(|e| {
                    BlockError::Config(format!("cannot create the bucket directory {}: {e}", dir.display()))
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(&dir)?)
            }
            StorageBackend::S3 => {
                let s3 = &self.s3;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket_name)
                    .with_retry(retry)
                    .with_client_options(client.with_allow_http(s3.insecure));
                if !s3.region.is_empty() {
                    b = b.with_region(&s3.region);
                } else {
                    b = b.with_region("us-east-1");
                }
                if !s3.endpoint.is_empty() {
                    let endpoint = if s3.endpoint.contains("://") {
                        s3.endpoint.clone()
                    } else if s3.insecure {
                        format!("http://{}", s3.endpoint)
                    } else {
                        format!("https://{}", s3.endpoint)
                    };
                    // S3-compatible servers are addressed by path, as
                    // Mimir does with a custom endpoint.
                    b = b.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                if !s3.access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(&s3.secret_access_key);
                }
                Arc::new(b.build()?)
            }
            StorageBackend::Gcs => {
                let mut b = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&self.gcs.bucket_name)
                    .with_retry(retry)
                    .with_client_options(client);
                if !self.gcs.service_account_path.is_empty() {
                    b = b.with_service_account_path(&self.gcs.service_account_path);
                }
                Arc::new(b.build()?)
            }
            StorageBackend::Azure => {
                let a = &self.azure;
                let mut b = MicrosoftAzureBuilder::new()
                    .with_account(&a.account_name)
                    .with_container_name(&a.container_name)
                    .with_retry(retry)
                    .with_client_options(client);
                if !a.account_key.is_empty() {
                    b = b.with_access_key(&a.account_key);
                }
                if !a.endpoint.is_empty() {
                    b = b.with_endpoint(a.endpoint.clone()).with_allow_http(a.endpoint.starts_with("http://"));
                }
                Arc::new(b.build()?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let mut c = BucketConfig::default();
        assert!(c.validate().is_ok());
        c.backend = StorageBackend::S3;
        assert!(c.validate().is_err());
        c.s3.bucket_name = "b".into();
        assert!(c.validate().is_ok());
        c.backend = StorageBackend::Azure;
        assert!(c.validate().is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = BucketConfig::default();
        c.s3.secret_access_key = "hunter2".into();
        let y = serde_json::to_string(&c).unwrap();
        assert!(!y.contains("hunter2"));
        assert!(y.contains("<redacted>"));
    }

    #[test]
    fn filesystem_bucket_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let b = BucketConfig::default().open(&dir.path().join("blocks")).unwrap();
        assert!(dir.path().join("blocks").is_dir());
        drop(b);
    }
}
