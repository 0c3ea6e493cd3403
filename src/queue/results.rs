//! Where a job's images go: a [`ResultsStore`] (a folder by default, or a sink the
//! application provides). The job record keeps the returned [`ResultLocation`]s, never the
//! bytes, so a record stays small whatever the images weigh.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::job::{JobId, ResultLocation};
use crate::response::Image;

/// A place to write result images.
#[async_trait]
pub trait ResultsStore: Send + Sync + fmt::Debug {
    /// Writes image `index` of job `job` and says where it is. Writing the same job and index
    /// again replaces it (a job re-run after a crash writes its images again).
    async fn put(&self, job: &JobId, index: usize, image: &Image)
        -> Result<ResultLocation, String>;
}

/// The default results store: one file per image in a folder, `<job id>-<index>.<ext>`,
/// written to a temporary name first and renamed, so a crash never leaves a half-written file
/// under a result's name.
#[derive(Clone, Debug)]
pub struct FolderStore {
    dir: PathBuf,
}

impl FolderStore {
    /// A store writing into `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl ResultsStore for FolderStore {
    async fn put(
        &self,
        job: &JobId,
        index: usize,
        image: &Image,
    ) -> Result<ResultLocation, String> {
        let dir = self.dir.clone();
        let name = format!("{}-{}.{}", job.as_str(), index, image.format.extension());
        let bytes = image.bytes.clone();
        let content_type = image.format.mime().to_string();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let path = dir.join(&name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
            Ok(ResultLocation {
                location: path.display().to_string(),
                bytes: bytes.len() as u64,
                content_type,
            })
        })
        .await
        .map_err(|e| format!("results store task: {e}"))?
    }
}
