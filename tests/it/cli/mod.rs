//! The `image-router` command line and what a new user runs first: commands, batch and resume,
//! doctor, the quickstart and the README's examples; and the daily-use features (zero-config,
//! edit, logs, quiet, stdin prompts, completions, man pages).

mod batch;
mod commands;
mod daily;
mod doctor;
mod end_to_end;
mod quickstart;
mod readme;
