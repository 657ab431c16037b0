//! `eqprop`: the command line over the library.

mod commands;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {}", describe(&err));
        std::process::exit(1);
    }
}

/// The error and those of its causes that its own message does not already spell out.
fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}
