//! Data sets: IDX files (MNIST, Fashion-MNIST), their download and verification.
