//! Where a run's data comes from: a data set, the folder holding it, a mirror to fetch missing
//! files from, and how many training images to use.

use super::{DataError, Dataset, DatasetName, Split, dataset_dir, load_or_download};
use std::path::PathBuf;

/// A data set and where to find it; [`load`](Self::load) reads a split, downloading (and
/// verifying) the files first if they are missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSource {
    pub name: DatasetName,
    /// The data root holding `<name>/` (default: `$EQPROP_DATA_DIR`, else the user cache; see
    /// [`dataset_dir`]).
    pub root: Option<PathBuf>,
    /// Base URL of a mirror holding `mnist/` and `fashion-mnist/` (default: `$EQPROP_MIRROR`,
    /// else the canonical mirrors).
    pub mirror: Option<String>,
    /// Use only the first N training images (the test split is always whole).
    pub train_limit: Option<usize>,
}

impl DataSource {
    /// `name` from its default place, every image.
    pub fn new(name: DatasetName) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    /// The folder holding the data set's files.
    pub fn dir(&self) -> PathBuf {
        dataset_dir(self.root.as_deref(), self.name)
    }

    /// The split, the training images cut to [`train_limit`](Self::train_limit).
    pub fn load(&self, split: Split) -> Result<Dataset, DataError> {
        let mut data = load_or_download(self.name, split, &self.dir(), self.mirror.as_deref())?;
        if let (Split::Train, Some(n)) = (split, self.train_limit) {
            data.truncate(n);
        }
        Ok(data)
    }
}
