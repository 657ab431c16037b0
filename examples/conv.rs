//! Trains a convolutional EqProp network on MNIST and prints its test error after every epoch:
//! what `eqprop train --preset conv-mnist --epochs N --train-limit M` does, without the command
//! line. The architecture is a spec string; any conv/pool/dense stack works.
//!
//! `cargo run --release --example conv -- [EPOCHS] [TRAIN_LIMIT]`
use eqprop::conv::ConvConfig;
use eqprop::data::{DataSource, DatasetName, Split};
use eqprop::run::ConvRun;
use std::sync::atomic::AtomicBool;

fn main() -> eqprop::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let mut cfg = ConvConfig::preset("conv-mnist")?; // 1x28x28,conv32k5+pool,conv64k5+pool,10
    cfg.epochs = args.next().flatten().unwrap_or(cfg.epochs);
    let mut mnist = DataSource::new(DatasetName::Mnist);
    mnist.train_limit = args.next().flatten();
    let (train, test) = (mnist.load(Split::Train)?, mnist.load(Split::Test)?);
    let mut run = ConvRun::new(cfg, mnist.name)?;
    let report = run.train(&train, &test, &AtomicBool::new(false), &mut ())?;
    for epoch in &report.epochs {
        println!("epoch {}: test error {}%", epoch.epoch, epoch.test_error);
    }
    Ok(())
}
