//! torchvision's `RandomResizedCrop` on one stored image: a random window of random area and
//! aspect ratio, resampled bilinearly to the image's own size.

use lit_base::Generator;

/// The aspect ratios (width / height) a window is drawn from, torchvision's default.
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A window `(top, left, height, width)` of an `h x w` image covering a fraction of its area
/// drawn from `U(min_scale, 1)` and an aspect ratio log-uniform in [`RATIO`], as torchvision's
/// `RandomResizedCrop.get_params`: ten tries, then the largest centred window of a ratio in range.
pub(crate) fn window(h: usize, w: usize, min_scale: f64, g: &mut Generator) -> [usize; 4] {
    let area = (h * w) as f64;
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * g.uniform_one(min_scale, 1.0);
        let ratio = g.uniform_one(lo, hi).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if (1..=w).contains(&cw) && (1..=h).contains(&ch) {
            let top = g.uniform_one(0.0, (h - ch + 1) as f64).floor() as usize;
            let left = g.uniform_one(0.0, (w - cw + 1) as f64).floor() as usize;
            return [top.min(h - ch), left.min(w - cw), ch, cw];
        }
    }
    let own = w as f64 / h as f64;
    let (ch, cw) = if own < RATIO.0 {
        (((w as f64) / RATIO.0).round() as usize, w)
    } else if own > RATIO.1 {
        (h, ((h as f64) * RATIO.1).round() as usize)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    [(h - ch) / 2, (w - cw) / 2, ch, cw]
}

/// Replaces each plane of `img` (`c x h x w`) by its `window` resized to `h x w`, bilinearly with
/// half-pixel centres (`align_corners=False`).
pub(crate) fn crop_resize(img: &mut [f32], (c, h, w): (usize, usize, usize), window: [usize; 4]) {
    let [top, left, ch, cw] = window;
    let src = img.to_vec();
    let axis = |out: usize, len: usize, at: usize| -> Vec<(usize, usize, f64)> {
        let step = len as f64 / out as f64;
        (0..out)
            .map(|o| {
                let s = ((o as f64 + 0.5) * step - 0.5).clamp(0.0, (len - 1) as f64);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(len - 1);
                (at + i0, at + i1, s - i0 as f64)
            })
            .collect()
    };
    let rows = axis(h, ch, top);
    let cols = axis(w, cw, left);
    for p in 0..c {
        let plane = &src[p * h * w..(p + 1) * h * w];
        for (y, &(y0, y1, fy)) in rows.iter().enumerate() {
            for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
                let v = |yy: usize, xx: usize| f64::from(plane[yy * w + xx]);
                let top = v(y0, x0) * (1.0 - fx) + v(y0, x1) * fx;
                let bottom = v(y1, x0) * (1.0 - fx) + v(y1, x1) * fx;
                img[p * h * w + y * w + x] = (top * (1.0 - fy) + bottom * fy) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_image_resamples_to_itself_and_a_corner_is_magnified() {
        let mut img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        crop_resize(&mut img, (1, 4, 4), [0, 0, 4, 4]);
        assert_eq!(img, (0..16).map(|v| v as f32).collect::<Vec<_>>());
        // The top-left 2 x 2 (0 1 / 4 5) to 4 x 4 by the source index of PyTorch's
        // interpolate(mode="bilinear", align_corners=False), (dst + 0.5) * 2 / 4 - 0.5 clamped
        // to [0, 1]: sources 0, .25, .75, 1 along each axis.
        let mut img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        crop_resize(&mut img, (1, 4, 4), [0, 0, 2, 2]);
        let want = [
            0.0, 0.25, 0.75, 1.0, 1.0, 1.25, 1.75, 2.0, 3.0, 3.25, 3.75, 4.0, 4.0, 4.25, 4.75, 5.0,
        ];
        assert_eq!(img, want);
    }

    #[test]
    fn windows_stay_inside_with_area_and_ratio_in_range() {
        let mut g = Generator::new(3);
        for _ in 0..500 {
            let [top, left, h, w] = window(28, 32, 0.08, &mut g);
            assert!(top + h <= 28 && left + w <= 32 && h > 0 && w > 0);
            let area = (h * w) as f64 / (28.0 * 32.0);
            assert!((0.05..=1.0).contains(&area), "{area}");
        }
        // min_scale 1 and a square image: the whole image, whatever the ratio drawn.
        assert_eq!(window(10, 10, 1.0, &mut g), [0, 0, 10, 10]);
    }
}
