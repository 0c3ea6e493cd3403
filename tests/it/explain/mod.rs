//! `explain()`: every error in plain words, since users read these rather than traces.

mod limits;
mod plain_words;
mod router;
