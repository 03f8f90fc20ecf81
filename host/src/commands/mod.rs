//! One module per `securerouter` command: its options, as clap parses them, and what it runs
//! ([`data`]: the labelled-data options two commands share). [`run`] hands the parsed command
//! to its module.

pub mod assets;
pub mod bench;
pub mod client;
pub mod data;
pub mod dealer;
pub mod demo;
pub mod deploy;
pub mod device_table;
pub mod doctor;
pub mod keys;
pub mod serve;
pub mod service;
pub mod train;

use crate::cli::Command;
use std::io::Write;

/// Runs the parsed command, writing its report to `out`.
///
/// # Errors
/// Whatever the command fails with (for `doctor`, only a failure to write to `out`).
pub fn run(command: &Command, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        Command::Doctor(args) => doctor::run(args, out),
        Command::Demo(args) => demo::run(args, out),
        Command::Assets(action) => assets::run(action, out),
        Command::Keys(args) => keys::run(args, out),
        Command::Deploy(args) => deploy::run(args, out),
        Command::Dealer(args) => dealer::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(action) => train::run(action, out),
        Command::Bench(what) => bench::run(what, out),
        Command::DeviceTable(args) => device_table::run(args, out),
        Command::Client(args) => client::run(args, out),
    }
}
