//! `eqprop`: the command line over the library.

mod commands;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
