//! Trains the `best` 784-500-10 network on MNIST and prints its test error after every epoch:
//! what `eqprop train --epochs N --train-limit M` does, without the command line.
//!
//! `cargo run --release --example train -- [EPOCHS] [TRAIN_LIMIT]`
use eqprop::config::Hyperparams;
use eqprop::data::{DataSource, DatasetName, Split};
use eqprop::device::Device;
use eqprop::run::Run;
use std::sync::atomic::AtomicBool;

fn main() -> eqprop::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let mut hp = Hyperparams::preset("best")?; // 784-500-10, the settings of the results table
    hp.epochs = args.next().flatten().unwrap_or(hp.epochs);
    // MNIST from $EQPROP_DATA_DIR, else downloaded (checksums verified) to the user cache.
    let mut mnist = DataSource::new(DatasetName::Mnist);
    mnist.train_limit = args.next().flatten();
    let (train, test) = (mnist.load(Split::Train)?, mnist.load(Split::Test)?);
    // Device::Cuda trains on an NVIDIA GPU (a build with `--features cuda`).
    let mut run = Run::new(hp, mnist.name, Device::Cpu)?;
    let stop = AtomicBool::new(false); // set it (on Ctrl-C, say) to stop after a mini-batch
    let report = run.train(&train, &test, &stop, &mut ())?;
    for epoch in &report.epochs {
        println!("epoch {}: test error {}%", epoch.epoch, epoch.test_error);
    }
    Ok(())
}
