//! The pixel values of an image set: owned by the set, or shared with a buffer that another
//! runtime owns (a numpy array handed in from Python), read in place without a copy.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A buffer of pixel values that something outside this crate owns and keeps alive as long as
/// the [`Arc`] holding it lives. Its values must not change while a [`Pixels`] shares it.
pub trait PixelBuffer: Send + Sync {
    /// Every value of the buffer.
    fn values(&self) -> &[f32];
}

/// Pixel values, image after image: a `Vec` of their own, or the first `len` values of a
/// shared [`PixelBuffer`]. Reads go through `Deref<Target = [f32]>`; the first change to
/// shared pixels ([`to_mut`](Self::to_mut)) copies them (copy on write).
#[derive(Clone)]
pub struct Pixels(Storage);

#[derive(Clone)]
enum Storage {
    Owned(Vec<f32>),
    Shared {
        buffer: Arc<dyn PixelBuffer>,
        len: usize,
    },
}

impl Pixels {
    /// The values of `buffer`, read in place.
    pub fn shared(buffer: Arc<dyn PixelBuffer>) -> Self {
        let len = buffer.values().len();
        Self(Storage::Shared { buffer, len })
    }

    /// Whether the values are read in place from a shared buffer.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Storage::Shared { .. })
    }

    /// The values as a `Vec` to change, copied out of a shared buffer first.
    pub fn to_mut(&mut self) -> &mut Vec<f32> {
        if let Storage::Shared { .. } = self.0 {
            self.0 = Storage::Owned(self.to_vec());
        }
        match &mut self.0 {
            Storage::Owned(values) => values,
            Storage::Shared { .. } => unreachable!("made owned above"),
        }
    }

    /// Keeps the first `len` values (a shared buffer stays shared: only the view shrinks).
    pub fn truncate(&mut self, len: usize) {
        match &mut self.0 {
            Storage::Owned(values) => values.truncate(len),
            Storage::Shared { len: kept, .. } => *kept = len.min(*kept),
        }
    }

    /// The values as a `Vec` of their own (no copy when they are already owned).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Storage::Owned(values) => values,
            Storage::Shared { .. } => self.to_vec(),
        }
    }
}

impl Deref for Pixels {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Storage::Owned(values) => values,
            Storage::Shared { buffer, len } => &buffer.values()[..*len],
        }
    }
}

impl Default for Pixels {
    fn default() -> Self {
        Self(Storage::Owned(Vec::new()))
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(values: Vec<f32>) -> Self {
        Self(Storage::Owned(values))
    }
}

impl FromIterator<f32> for Pixels {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl<'a> IntoIterator for &'a Pixels {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<f32>> for Pixels {
    fn eq(&self, other: &Vec<f32>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_shared() { "shared" } else { "owned" };
        write!(f, "Pixels({} values, {kind})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buffer(Vec<f32>);

    impl PixelBuffer for Buffer {
        fn values(&self) -> &[f32] {
            &self.0
        }
    }

    #[test]
    fn shared_pixels_are_read_in_place_and_copied_on_write() {
        let buffer = Arc::new(Buffer(vec![0.25, 0.5, 0.75, 1.0]));
        let mut pixels = Pixels::shared(buffer.clone());
        assert_eq!(pixels.as_ptr(), buffer.0.as_ptr(), "no copy");
        pixels.truncate(3);
        assert!(pixels.is_shared());
        assert_eq!(&*pixels, &[0.25, 0.5, 0.75]);
        pixels.to_mut().push(0.0);
        assert!(!pixels.is_shared());
        assert_eq!(pixels, vec![0.25, 0.5, 0.75, 0.0]);
        assert_eq!(
            buffer.0,
            vec![0.25, 0.5, 0.75, 1.0],
            "the buffer is untouched"
        );
    }
}
