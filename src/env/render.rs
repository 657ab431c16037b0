//! Drawing environment states into RGBA frames (no anti-aliasing: few colours, compact GIFs).

use image::{Rgba, RgbaImage};

const BG: Rgba<u8> = Rgba([255, 255, 255, 255]);
const TRACK: Rgba<u8> = Rgba([0, 0, 0, 255]);
const CART: Rgba<u8> = Rgba([0, 0, 0, 255]);
const POLE: Rgba<u8> = Rgba([202, 152, 101, 255]);
const AXLE: Rgba<u8> = Rgba([129, 132, 203, 255]);
const ROD: Rgba<u8> = Rgba([204, 77, 77, 255]);

/// Fill the axis-aligned rectangle `[x0, x1] x [y0, y1]` (pixel coordinates, clipped).
pub fn fill_rect(img: &mut RgbaImage, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgba<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let xa = (x0.min(x1).round() as i64).clamp(0, w);
    let xb = (x0.max(x1).round() as i64).clamp(0, w);
    let ya = (y0.min(y1).round() as i64).clamp(0, h);
    let yb = (y0.max(y1).round() as i64).clamp(0, h);
    for y in ya..yb {
        for x in xa..xb {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// A segment of the given thickness with round caps.
pub fn thick_line(img: &mut RgbaImage, p: (f64, f64), q: (f64, f64), width: f64, c: Rgba<u8>) {
    let r = width / 2.0;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let xa = ((p.0.min(q.0) - r).floor() as i64).clamp(0, w);
    let xb = ((p.0.max(q.0) + r).ceil() as i64).clamp(0, w);
    let ya = ((p.1.min(q.1) - r).floor() as i64).clamp(0, h);
    let yb = ((p.1.max(q.1) + r).ceil() as i64).clamp(0, h);
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let len2 = dx * dx + dy * dy;
    for y in ya..yb {
        for x in xa..xb {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let t = if len2 > 0.0 {
                (((px - p.0) * dx + (py - p.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (cx, cy) = (p.0 + t * dx - px, p.1 + t * dy - py);
            if cx * cx + cy * cy <= r * r {
                img.put_pixel(x as u32, y as u32, c);
            }
        }
    }
}

/// A filled disc.
pub fn disc(img: &mut RgbaImage, center: (f64, f64), radius: f64, c: Rgba<u8>) {
    thick_line(img, center, center, 2.0 * radius, c);
}

/// CartPole frame (Gymnasium's layout: 600x400, world width 4.8, pole length 1.0).
pub fn cartpole_frame(state: &[f64]) -> RgbaImage {
    cartpole_frame_with(state, 0.5)
}

/// CartPole frame of a pole of half-length `length` (Gymnasium draws `2 * length`).
pub fn cartpole_frame_with(state: &[f64], length: f64) -> RgbaImage {
    let (w, h) = (600u32, 400u32);
    let mut img = RgbaImage::from_pixel(w, h, BG);
    let scale = w as f64 / (2.4 * 2.0);
    let pole_len = scale * 2.0 * length;
    let (cart_w, cart_h, pole_w) = (50.0, 30.0, 10.0);
    let track_y = h as f64 - 100.0; // screen y grows downward
    let (x, theta) = (state[0], state[2]);
    let cart_x = x * scale + w as f64 / 2.0;
    thick_line(&mut img, (0.0, track_y), (w as f64, track_y), 1.0, TRACK);
    fill_rect(
        &mut img,
        cart_x - cart_w / 2.0,
        track_y - cart_h / 2.0,
        cart_x + cart_w / 2.0,
        track_y + cart_h / 2.0,
        CART,
    );
    let axle = (cart_x, track_y - cart_h / 4.0);
    let tip = (
        axle.0 + pole_len * theta.sin(),
        axle.1 - pole_len * theta.cos(),
    );
    thick_line(&mut img, axle, tip, pole_w, POLE);
    disc(&mut img, axle, pole_w / 2.0, AXLE);
    img
}

/// Pendulum frame: a rod from the centre at angle `th` (0 = upright), 500x500.
pub fn pendulum_frame(state: &[f64]) -> RgbaImage {
    let n = 500u32;
    let mut img = RgbaImage::from_pixel(n, n, BG);
    let c = n as f64 / 2.0;
    let scale = n as f64 / 2.2 / 2.0 * 1.0;
    let th = state[0];
    let len = scale * 1.0 * 1.6;
    let tip = (c + len * th.sin(), c - len * th.cos());
    thick_line(&mut img, (c, c), tip, 0.2 * scale, ROD);
    disc(&mut img, (c, c), 0.05 * scale, TRACK);
    img
}

/// Two frames side by side, a grey rule between them.
pub fn side_by_side(left: &RgbaImage, right: &RgbaImage) -> RgbaImage {
    const RULE: u32 = 4;
    let (w, h) = (
        left.width() + RULE + right.width(),
        left.height().max(right.height()),
    );
    let mut img = RgbaImage::from_pixel(w, h, BG);
    image::imageops::replace(&mut img, left, 0, 0);
    image::imageops::replace(&mut img, right, i64::from(left.width() + RULE), 0);
    let x = f64::from(left.width());
    fill_rect(
        &mut img,
        x,
        0.0,
        x + f64::from(RULE),
        f64::from(h),
        Rgba([160, 160, 160, 255]),
    );
    img
}

/// Frame of a state in a world, drawn as Gymnasium draws that world: CartPole's pole at its own
/// length, Pendulum's rod at its fixed drawn length (Gymnasium does not draw `l`).
pub fn world_frame(physics: &super::Physics, state: &[f64]) -> Option<RgbaImage> {
    match physics {
        super::Physics::CartPole(p) if state.len() == 4 => {
            Some(cartpole_frame_with(state, p.length))
        }
        super::Physics::Pendulum(_) if state.len() == 2 => Some(pendulum_frame(state)),
        _ => None,
    }
}

/// Frame for an environment id (`CartPole-v1` or `Pendulum-v1`) and its float64 state.
pub fn frame(env_id: &str, state: &[f64]) -> Option<RgbaImage> {
    if env_id.starts_with("CartPole") && state.len() == 4 {
        Some(cartpole_frame(state))
    } else if env_id.starts_with("Pendulum") && state.len() == 2 {
        Some(pendulum_frame(state))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{CartPoleParams, Physics};

    #[test]
    fn a_world_is_drawn_with_its_own_pole() {
        let state = [0.1, 0.0, 0.2, 0.0];
        let default = Physics::CartPole(CartPoleParams::default());
        assert_eq!(
            world_frame(&default, &state).unwrap(),
            cartpole_frame(&state)
        );
        let long = Physics::CartPole(CartPoleParams {
            length: 1.0,
            ..Default::default()
        });
        assert_ne!(world_frame(&long, &state).unwrap(), cartpole_frame(&state));
        assert!(world_frame(&long, &[0.0, 0.0]).is_none());
    }
}
