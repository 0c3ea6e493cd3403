//! The batch manifest: a JSON-lines record, in the output folder, of every prompt whose images
//! were saved: its id (the output name), its prompt, the files written, the provider and the
//! cost. A re-run skips a prompt the manifest lists with the same prompt text whose files all
//! still exist.
//!
//! Why a record and not file names: the files are named by what came back (a provider may
//! answer PNG for a JPEG request, or two images for `n = 1`), so names guessed from the
//! request miss them and the prompt was generated, and billed, again on every re-run.
//!
//! A line is appended (and flushed) right after a prompt's images are renamed into place, so
//! an interrupted run loses at most the prompt being recorded; a torn last line is ignored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's file name inside the output folder.
pub const FILE_NAME: &str = ".image-router-batch.jsonl";

/// One done prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The prompt's output name (unique in a batch).
    pub id: String,
    /// The prompt text (a changed prompt under the same name runs again).
    pub prompt: String,
    /// The files written, relative to the output folder.
    pub files: Vec<String>,
    /// The provider that served it.
    pub provider: String,
    /// What it cost, when known.
    pub cost_usd: Option<f64>,
}

/// The done prompts of an output folder, and the open manifest to add to.
pub struct Manifest {
    dir: PathBuf,
    done: HashMap<String, Entry>,
    file: File,
}

impl Manifest {
    /// Reads the folder's manifest (if any) and opens it for appending.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let mut done = HashMap::new();
        let mut torn = false;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).split(b'\n') {
                let line = line?;
                // A line that does not parse (torn by a crash, edited by hand) records nothing.
                match serde_json::from_slice::<Entry>(&line) {
                    Ok(e) => {
                        done.insert(e.id.clone(), e);
                        torn = false;
                    }
                    Err(_) => torn = !line.is_empty(),
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if torn {
            // End the torn line so the next record starts on a line of its own.
            file.write_all(b"\n")?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            done,
            file,
        })
    }

    /// The files of prompt `id` when it is done: recorded with this `prompt`, and every file
    /// still there.
    pub fn done(&self, id: &str, prompt: &str) -> Option<Vec<PathBuf>> {
        let e = self.done.get(id).filter(|e| e.prompt == prompt)?;
        let files: Vec<PathBuf> = e.files.iter().map(|f| self.dir.join(f)).collect();
        (!files.is_empty() && files.iter().all(|f| f.is_file())).then_some(files)
    }

    /// Records a done prompt: one line, flushed.
    pub fn record(&mut self, entry: Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()?;
        self.done.insert(entry.id.clone(), entry);
        Ok(())
    }

    /// `path` relative to the output folder (its file name when it is inside).
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_need_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::open(dir.path()).unwrap();
        assert!(m.done("cat", "a cat").is_none());
        std::fs::write(dir.path().join("cat.png"), b"x").unwrap();
        m.record(Entry {
            id: "cat".into(),
            prompt: "a cat".into(),
            files: vec!["cat.png".into()],
            provider: "p".into(),
            cost_usd: Some(0.01),
        })
        .unwrap();
        drop(m);
        // A torn line after a crash is ignored.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\": \"dog\", \"pro").unwrap();
        let mut m = Manifest::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("owl.png"), b"x").unwrap();
        m.record(Entry {
            id: "owl".into(),
            prompt: "an owl".into(),
            files: vec!["owl.png".into()],
            provider: "p".into(),
            cost_usd: None,
        })
        .unwrap();
        drop(m);
        let m = Manifest::open(dir.path()).unwrap();
        assert!(
            m.done("owl", "an owl").is_some(),
            "a record after a torn line"
        );
        assert_eq!(
            m.done("cat", "a cat"),
            Some(vec![dir.path().join("cat.png")])
        );
        assert!(m.done("cat", "another cat").is_none(), "prompt changed");
        assert!(m.done("dog", "a dog").is_none());
        std::fs::remove_file(dir.path().join("cat.png")).unwrap();
        assert!(m.done("cat", "a cat").is_none(), "file gone");
    }
}
