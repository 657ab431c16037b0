//! What the diagnostic examples share: the command line `CHECKPOINT [IMAGES] SETTINGS...`, the
//! checkpoint of a network with convolutions, and the first `IMAGES` training images of its
//! data set (40 by default).

use eqprop::conv::checkpoint::{self, ConvCheckpoint};
use eqprop::data::{DataSource, Dataset, Split};
use eqprop::tensor::Matrix;
use std::path::Path;

/// Runs `run`, printing its error and exiting with status 1 if it fails.
pub fn exit_on_error(run: fn() -> eqprop::Result<()>) {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The checkpoint, its training images, and the settings after them as `parse` reads them
/// (before the images are loaded, so that a bad setting is refused at once).
pub fn from_args<T>(
    usage: &str,
    parse: impl Fn(&[String]) -> eqprop::Result<T>,
) -> eqprop::Result<(ConvCheckpoint, Dataset, T)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| invalid(usage))?;
    let saved = checkpoint::load(Path::new(path))?;
    let (images, rest) = match args.get(1).and_then(|a| a.parse::<usize>().ok()) {
        Some(n) => (n, &args[2..]),
        None => (40, &args[1..]),
    };
    let settings = parse(rest)?;
    let mut source = DataSource::new(saved.dataset.parse()?);
    source.train_limit = Some(images);
    let data = source.load(Split::Train)?;
    Ok((saved, data, settings))
}

/// The images of `data` as input rows.
pub fn inputs(data: &Dataset) -> Matrix {
    let mut x = Matrix::zeros(data.len(), data.image(0).len());
    for i in 0..data.len() {
        x.row_mut(i).copy_from_slice(data.image(i));
    }
    x
}

pub fn invalid(message: &str) -> eqprop::Error {
    eqprop::Error::Invalid(message.to_string())
}
