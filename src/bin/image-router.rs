//! `image-router`: generate images, run batches, check providers and show the configuration
//! from a terminal. A thin layer over the library: see `src/cli/`.

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
