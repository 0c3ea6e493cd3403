//! The `image-router` command line and what a new user runs first: commands, batch and resume,
//! doctor, the quickstart and the README's examples.

mod batch;
mod commands;
mod doctor;
mod end_to_end;
mod quickstart;
mod readme;
