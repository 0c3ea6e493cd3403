//! `explain()`: every error in plain words, since users read these rather than traces.

mod plain_words;
mod router;
