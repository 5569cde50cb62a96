//! How `tough` reads a repository's metadata: through our fetcher (the same
//! HTTP agent, timeouts and limits as every other read), or from a folder.
//! A missing file is `FileNotFound`, which TUF's root update needs to tell
//! from a failure.

use std::sync::Arc;

use tough::{TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::fetch::Fetcher;
use crate::settings::Settings;

/// The most a metadata file may be: more is an endless-data attack (tough's
/// own limits, smaller, apply first).
const METADATA_LIMIT: u64 = 16 << 20;

#[derive(Clone)]
pub(super) struct Transport {
    fetcher: Arc<Fetcher>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cvl-repo transport")
    }
}

impl Transport {
    pub(super) fn new(settings: &Settings) -> Transport {
        Transport {
            fetcher: Arc::new(Fetcher::new(settings.clone())),
        }
    }

    /// `name` under `base`: its bytes, `None` when it does not exist.
    pub(super) fn get(&self, base: &Url, name: &str) -> Result<Option<Vec<u8>>, String> {
        let url = base.join(name).map_err(|e| e.to_string())?;
        self.read(&url)
    }

    fn read(&self, url: &Url) -> Result<Option<Vec<u8>>, String> {
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| format!("{url} is not a local path"))?;
                match crate::paths::read_limited(&path, METADATA_LIMIT) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(_) if !path.exists() => Ok(None),
                    Err(e) => Err(e),
                }
            }
            "http" | "https" => self.fetcher.get_optional(url.as_str(), METADATA_LIMIT),
            other => Err(format!("{url}: the scheme {other} is not supported")),
        }
    }
}

#[async_trait::async_trait]
impl tough::Transport for Transport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match self.read(&url) {
            Ok(Some(bytes)) => {
                let chunk: Result<tough::Bytes, TransportError> = Ok(tough::Bytes::from(bytes));
                Ok(Box::pin(futures::stream::iter(vec![chunk])))
            }
            Ok(None) => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Err(e) => Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                std::io::Error::other(e),
            )),
        }
    }
}
