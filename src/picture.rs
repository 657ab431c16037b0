//! Pictures people would rather see than numbers: labelled image grids (PNG) and animations (GIF),
//! written atomically.

use crate::checkpoint::write_atomically;
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, ImageFormat, Rgba, RgbaImage};
use std::io::Cursor;
use std::path::Path;

/// A 3 x 5 bitmap font for the digits 0-9 (one row of three bits per byte, top row first).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

const BACKGROUND: Rgba<u8> = Rgba([40, 40, 48, 255]);
const INK: Rgba<u8> = Rgba([255, 200, 60, 255]);

/// Shape of the grid: each image is `width x height` pixels (values in `[0, 1]`, row-major),
/// drawn `scale` times larger with a 2-pixel gap.
#[derive(Clone, Copy, Debug)]
pub struct GridLayout {
    pub width: usize,
    pub height: usize,
    pub scale: u32,
}

/// One row per entry: its label drawn on the left, then its images (rows may differ in length).
pub fn labelled_grid(rows: &[(usize, Vec<&[f32]>)], layout: GridLayout) -> RgbaImage {
    let cell_w = layout.width as u32 * layout.scale + 2;
    let cell_h = layout.height as u32 * layout.scale + 2;
    let columns = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0) as u32;
    let mut img = RgbaImage::from_pixel(
        cell_w * (columns + 1),
        (cell_h * rows.len() as u32).max(1),
        BACKGROUND,
    );
    for (i, (label, images)) in rows.iter().enumerate() {
        let y = i as u32 * cell_h + 1;
        draw_number(
            &mut img,
            *label,
            (cell_w / 6, y + cell_h / 4),
            (cell_h / 10).max(1),
        );
        for (j, pixels) in images.iter().enumerate() {
            draw_image(&mut img, pixels, layout, ((j as u32 + 1) * cell_w + 1, y));
        }
    }
    img
}

/// Draws `pixels` (grey levels in `[0, 1]`) with its top-left corner at `at`.
fn draw_image(img: &mut RgbaImage, pixels: &[f32], layout: GridLayout, at: (u32, u32)) {
    for (p, &v) in pixels.iter().enumerate().take(layout.width * layout.height) {
        let grey = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let (px, py) = ((p % layout.width) as u32, (p / layout.width) as u32);
        for dy in 0..layout.scale {
            for dx in 0..layout.scale {
                let (x, y) = (at.0 + px * layout.scale + dx, at.1 + py * layout.scale + dy);
                img.put_pixel(x, y, Rgba([grey, grey, grey, 255]));
            }
        }
    }
}

/// Draws the decimal digits of `n` with the bitmap font, each font pixel `size` wide.
fn draw_number(img: &mut RgbaImage, n: usize, at: (u32, u32), size: u32) {
    for (i, digit) in n.to_string().bytes().enumerate() {
        let glyph = DIGITS[(digit - b'0') as usize];
        let x0 = at.0 + i as u32 * 4 * size;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..size {
                        for dx in 0..size {
                            let (x, y) = (x0 + col * size + dx, at.1 + row as u32 * size + dy);
                            if x < img.width() && y < img.height() {
                                img.put_pixel(x, y, INK);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A picture that cannot be encoded or written.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// The encoder refused the picture.
    #[error(transparent)]
    Encode(#[from] image::ImageError),
    /// The encoded picture cannot be written to `path`.
    #[error("writing {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Writes the encoded `bytes` to `path`, atomically.
fn write(path: &Path, bytes: &[u8]) -> Result<(), PictureError> {
    write_atomically(path, bytes).map_err(|source| PictureError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `img` as a PNG, atomically.
pub fn write_png(img: &RgbaImage, path: &Path) -> Result<(), PictureError> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
    write(path, &bytes)
}

/// Writes an endlessly looping GIF of `frames`, `delay_ms` each, atomically.
pub fn write_gif(frames: Vec<RgbaImage>, delay_ms: u32, path: &Path) -> Result<(), PictureError> {
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut bytes, 10);
        enc.set_repeat(Repeat::Infinite)?;
        for img in frames {
            let delay = Delay::from_numer_denom_ms(delay_ms, 1);
            enc.encode_frame(Frame::from_parts(img, 0, 0, delay))?;
        }
    }
    write(path, &bytes)
}
