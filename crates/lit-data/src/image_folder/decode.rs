//! Decoding one image file to `u8` pixels in `(C, H, W)` order: PIL's conversions to `L` and
//! `RGB`, torchvision's `Resize` (shorter side) and `CenterCrop`.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};

use crate::{Error, Result};

/// File extensions read, lower case (torchvision's `IMG_EXTENSIONS` that the `image` crate reads
/// here).
pub(crate) const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// Whether `path` names an image by its extension.
pub(crate) fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Opens `path`, naming it in the error.
pub(crate) fn open(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader.decode().map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: format!("not a readable PNG, JPEG or BMP image ({e})"),
    })
}

/// Whether the image at `path` holds gray levels only (with or without alpha), from its header.
pub(crate) fn header_is_gray(path: &Path) -> Result<bool> {
    use image::ImageDecoder;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let decoder = image::ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .into_decoder()
        .map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: format!("not a readable PNG, JPEG or BMP image ({e})"),
        })?;
    Ok(!decoder.color_type().has_color())
}

/// The image as `channels` (1: PIL's `L`, ITU-R 601-2 luma in Pillow's rounded fixed point,
/// `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16`; 3: `RGB`, gray replicated), alpha dropped, resized so its shorter side is `size` and center-cropped to
/// `size x size` when a size is given; the pixels in `(C, H, W)` order, with the height and
/// width.
pub(crate) fn pixels(
    image: DynamicImage,
    channels: usize,
    size: Option<usize>,
) -> (Vec<u8>, usize, usize) {
    let image = match size {
        Some(s) => resize_center_crop(image, s as u32),
        None => image,
    };
    let (w, h) = image.dimensions();
    let (w, h) = (w as usize, h as usize);
    let rgb = image.to_rgb8();
    let raw = rgb.as_raw();
    if channels == 1 {
        let gray = raw
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect();
        return (gray, h, w);
    }
    let mut planes = vec![0u8; 3 * h * w];
    for (i, p) in raw.chunks_exact(3).enumerate() {
        for c in 0..3 {
            planes[c * h * w + i] = p[c];
        }
    }
    (planes, h, w)
}

/// PIL's `L` of an RGB pixel: ITU-R 601-2 luma in 16-bit fixed point, rounded.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// torchvision's `Resize(size)` then `CenterCrop(size)`: the shorter side scaled to `size`
/// (bilinear, antialiased when shrinking, as the `image` crate's triangle filter does: pixel
/// values may differ from PIL's by a level or two), then the centre `size x size`.
fn resize_center_crop(image: DynamicImage, size: u32) -> DynamicImage {
    let (w, h) = image.dimensions();
    if w == size && h == size {
        return image;
    }
    let (nw, nh) = if w <= h {
        (
            size,
            ((u64::from(h) * u64::from(size)) / u64::from(w).max(1)) as u32,
        )
    } else {
        (
            ((u64::from(w) * u64::from(size)) / u64::from(h).max(1)) as u32,
            size,
        )
    };
    let resized = image.resize_exact(nw.max(size), nh.max(size), FilterType::Triangle);
    let (rw, rh) = resized.dimensions();
    // torchvision's offsets: int(round((h - size) / 2)), Python's round (half to even).
    let left = (f64::from(rw - size) / 2.0).round_ties_even() as u32;
    let top = (f64::from(rh - size) / 2.0).round_ties_even() as u32;
    resized.crop_imm(left, top, size, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_is_pils() {
        // PIL: Image.new("RGB", (1, 1), (200, 100, 50)).convert("L").getpixel((0, 0)) -> 124
        assert_eq!(luma(200, 100, 50), 124);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
    }
}
