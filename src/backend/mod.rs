//! The backend seam: the few linear-algebra kernels EqProp needs.
//!
//! Model code (dynamics, learning rule) calls only these operations, so a GPU backend replaces
//! them without the model knowing. The CPU backend is the reference implementation:
//!
//! * [`matmul_acc`]: `C += alpha * op(A) op(B)`, the dense GEMM behind every coupling term;
//! * [`SparseColumns`]: a column-compressed view of a clamped input batch (most MNIST pixels are
//!   exactly zero) with [`SparseColumns::drive_into`] (`D += X W`) and
//!   [`SparseColumns::rank_update`] (`W += c X^T Delta`), which skip the zeros.
pub mod cpu;

pub use cpu::{SparseColumns, Transpose, matmul_acc};
