//! Trigger patterns (docs/METHOD.md §2) and where they are stamped.
//!
//! A trigger is a small uint8 HWC image. `paper-gray` ("clbd") and `paper-rgb` ("htbd") are the
//! reference's 5x5 triggers with the exact values of docs/METHOD.md §2. Stamping replaces the pixels of the raw
//! uint8 image (before augmentation and normalization, as the reference does).
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A trigger pattern, spelled `paper-gray`, `paper-rgb`, `checkerboard`, `solid:R,G,B` or `image:PATH`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TriggerSpec {
    /// The reference's gray 5x5 trigger ("clbd").
    PaperGray,
    /// The reference's color 5x5 trigger ("htbd").
    PaperRgb,
    /// A black-and-white checkerboard.
    Checkerboard,
    /// One color.
    Solid([u8; 3]),
    /// An image file, resized to the trigger size.
    Image(PathBuf),
}

/// The gray trigger's values (rows, columns).
pub const PAPER_GRAY: [[u8; 5]; 5] = [
    [0, 0, 0, 171, 255],
    [0, 33, 101, 141, 154],
    [0, 101, 255, 101, 0],
    [166, 140, 101, 133, 154],
    [255, 158, 0, 158, 255],
];
/// The color trigger's values (channel, rows, columns).
pub const PAPER_RGB: [[[u8; 5]; 5]; 3] = [
    [
        [234, 93, 8, 6, 21],
        [244, 200, 78, 52, 161],
        [128, 218, 195, 170, 244],
        [82, 142, 218, 230, 178],
        [212, 83, 136, 183, 40],
    ],
    [
        [214, 77, 12, 26, 26],
        [72, 25, 87, 179, 180],
        [119, 37, 62, 138, 138],
        [172, 113, 40, 9, 8],
        [43, 173, 128, 7, 0],
    ],
    [
        [26, 26, 11, 83, 233],
        [179, 178, 80, 78, 228],
        [129, 128, 57, 32, 110],
        [77, 77, 79, 80, 77],
        [229, 229, 231, 231, 230],
    ],
];

impl FromStr for TriggerSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "paper-gray" => TriggerSpec::PaperGray,
            "paper-rgb" => TriggerSpec::PaperRgb,
            "checkerboard" => TriggerSpec::Checkerboard,
            _ => {
                if let Some(p) = s.strip_prefix("image:") {
                    TriggerSpec::Image(PathBuf::from(p))
                } else if let Some(v) = s.strip_prefix("solid:") {
                    let c: Vec<u8> =
                        v.split(',').map(|x| x.trim().parse::<u8>()).collect::<std::result::Result<_, _>>().map_err(
                            |_| Error::invalid("trigger", format!("`{s}`: solid:R,G,B needs three values 0-255")),
                        )?;
                    match c.as_slice() {
                        [r, g, b] => TriggerSpec::Solid([*r, *g, *b]),
                        [v] => TriggerSpec::Solid([*v; 3]),
                        _ => {
                            return Err(Error::invalid(
                                "trigger",
                                format!("`{s}`: solid:R,G,B needs three values 0-255"),
                            ))
                        }
                    }
                } else {
                    return Err(Error::invalid(
                        "trigger",
                        format!("unknown trigger `{s}` (paper-gray, paper-rgb, checkerboard, solid:R,G,B, image:PATH)"),
                    ));
                }
            }
        })
    }
}

impl std::fmt::Display for TriggerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerSpec::PaperGray => write!(f, "paper-gray"),
            TriggerSpec::PaperRgb => write!(f, "paper-rgb"),
            TriggerSpec::Checkerboard => write!(f, "checkerboard"),
            TriggerSpec::Solid([r, g, b]) => write!(f, "solid:{r},{g},{b}"),
            TriggerSpec::Image(p) => write!(f, "image:{}", p.display()),
        }
    }
}

impl From<TriggerSpec> for String {
    fn from(t: TriggerSpec) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for TriggerSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// A resolved trigger: `height x width x channels` uint8, HWC.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels (1 or 3).
    pub channels: usize,
    /// The pixels, HWC.
    pub pixels: Vec<u8>,
}

/// ITU-R 601 luma with PIL's integer rounding (`L = R*299/1000 + G*587/1000 + B*114/1000`).
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 299 + g as u32 * 587 + b as u32 * 114) / 1000) as u8
}

impl Trigger {
    /// Resolves a spec for images with `channels` channels. `size` is the side of the square trigger
    /// (`None`: 5, the paper's; image triggers are resized bilinearly, others by nearest neighbour).
    pub fn new(spec: &TriggerSpec, size: Option<usize>, channels: usize) -> Result<Self> {
        let (side, rgb): (usize, Vec<u8>) = match spec {
            TriggerSpec::PaperGray => (5, PAPER_GRAY.iter().flatten().flat_map(|&v| [v, v, v]).collect()),
            TriggerSpec::PaperRgb => {
                (5, (0..25).flat_map(|i| (0..3).map(move |c| PAPER_RGB[c][i / 5][i % 5])).collect())
            }
            TriggerSpec::Checkerboard => {
                let s = size.unwrap_or(5);
                (s, (0..s * s).flat_map(|i| [if (i / s + i % s).is_multiple_of(2) { 255 } else { 0 }; 3]).collect())
            }
            TriggerSpec::Solid(c) => {
                let s = size.unwrap_or(5);
                (s, (0..s * s).flat_map(|_| *c).collect())
            }
            TriggerSpec::Image(p) => {
                let img = image::open(p)
                    .map_err(|e| Error::bad_file(p, format!("cannot read trigger image: {e}")))?
                    .to_rgb8();
                let s = size.unwrap_or(5);
                let r = image::imageops::resize(&img, s as u32, s as u32, image::imageops::FilterType::Triangle);
                (s, r.into_raw())
            }
        };
        let rgb = match size {
            Some(s) if s != side && !matches!(spec, TriggerSpec::Image(_)) => resize_nearest(&rgb, side, s),
            _ => rgb,
        };
        let side = if matches!(spec, TriggerSpec::Image(_)) { size.unwrap_or(5) } else { size.unwrap_or(side) };
        if side == 0 {
            return Err(Error::invalid("trigger size", "must be at least 1"));
        }
        let pixels = match channels {
            3 => rgb,
            1 => rgb.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect(),
            c => return Err(Error::invalid("trigger", format!("images with {c} channels are not supported (1 or 3)"))),
        };
        Ok(Trigger { height: side, width: side, channels, pixels })
    }

    /// Pastes the trigger with its top-left pixel at (`top`, `left`) (row, column).
    pub fn stamp(&self, img: &mut [u8], (h, w, c): (usize, usize, usize), top: usize, left: usize) {
        debug_assert_eq!(c, self.channels);
        for i in 0..self.height.min(h.saturating_sub(top)) {
            for j in 0..self.width.min(w.saturating_sub(left)) {
                let dst = ((top + i) * w + left + j) * c;
                let src = (i * self.width + j) * c;
                img[dst..dst + c].copy_from_slice(&self.pixels[src..src + c]);
            }
        }
    }

    /// The trigger resized (bilinear) to a full `h x w` image, for the blended attack.
    pub fn full_image(&self, h: usize, w: usize) -> Vec<u8> {
        let c = self.channels;
        let mut out = vec![0u8; h * w * c];
        for y in 0..h {
            for x in 0..w {
                // Pixel-centre sampling (align_corners = False), clamped at the border.
                let sy = ((y as f32 + 0.5) * self.height as f32 / h as f32 - 0.5).clamp(0.0, (self.height - 1) as f32);
                let sx = ((x as f32 + 0.5) * self.width as f32 / w as f32 - 0.5).clamp(0.0, (self.width - 1) as f32);
                let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                let (y1, x1) = ((y0 + 1).min(self.height - 1), (x0 + 1).min(self.width - 1));
                let (fy, fx) = (sy - y0 as f32, sx - x0 as f32);
                for ch in 0..c {
                    let p = |yy: usize, xx: usize| self.pixels[(yy * self.width + xx) * c + ch] as f32;
                    let v = (1.0 - fy) * ((1.0 - fx) * p(y0, x0) + fx * p(y0, x1))
                        + fy * ((1.0 - fx) * p(y1, x0) + fx * p(y1, x1));
                    out[(y * w + x) * c + ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    /// 0/1 mask (h x w) of the pixels a stamp at (`top`, `left`) covers: the "true trigger" for IoU.
    pub fn mask(&self, h: usize, w: usize, top: usize, left: usize) -> Vec<u8> {
        let mut m = vec![0u8; h * w];
        for i in top..(top + self.height).min(h) {
            for j in left..(left + self.width).min(w) {
                m[i * w + j] = 1;
            }
        }
        m
    }
}

fn resize_nearest(rgb: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(to * to * 3);
    for y in 0..to {
        for x in 0..to {
            let (sy, sx) = (y * from / to, x * from / to);
            out.extend_from_slice(&rgb[(sy * from + sx) * 3..(sy * from + sx) * 3 + 3]);
        }
    }
    out
}

/// Where a patch trigger is stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Location {
    /// The reference's "upper right": rows/cols `size-t-3 .. size-3` (row index first, so visually the
    /// bottom-right corner with a 3-pixel margin).
    ReferenceUpperRight,
    /// The reference's "bottom left": rows/cols 3 .. 3+t (visually the top-left corner).
    BottomLeft,
    /// The visual top-left corner with a 1-pixel margin.
    CornerTopLeft,
    /// The visual top-right corner with a 1-pixel margin.
    CornerTopRight,
    /// The visual bottom-left corner with a 1-pixel margin.
    CornerBottomLeft,
    /// The visual bottom-right corner with a 1-pixel margin.
    CornerBottomRight,
    /// Column `x`, row `y` of the top-left trigger pixel.
    At {
        /// Column.
        x: usize,
        /// Row.
        y: usize,
    },
    /// Uniform over all positions, drawn per image from the seed.
    Random,
}

const MARGIN: usize = 1;

impl Location {
    /// Top-left (row, column) of a `th x tw` trigger in an `h x w` image; `draw` gives a random
    /// (row, column) for `Random`.
    pub fn place(
        &self,
        (h, w): (usize, usize),
        (th, tw): (usize, usize),
        draw: impl FnOnce(usize, usize) -> (usize, usize),
    ) -> Result<(usize, usize)> {
        if th > h || tw > w {
            return Err(Error::invalid("trigger size", format!("a {th}x{tw} trigger does not fit {h}x{w} images")));
        }
        let far = |size: usize, t: usize, m: usize| {
            size.checked_sub(t + m).ok_or_else(|| {
                Error::invalid(
                    "trigger location",
                    format!("a {t}-pixel trigger with a {m}-pixel margin does not fit {size} pixels"),
                )
            })
        };
        Ok(match *self {
            Location::ReferenceUpperRight => (far(h, th, 3)?, far(w, tw, 3)?),
            Location::BottomLeft => {
                far(h, th, 3)?;
                far(w, tw, 3)?;
                (3, 3)
            }
            Location::CornerTopLeft => (MARGIN, MARGIN),
            Location::CornerTopRight => (MARGIN, far(w, tw, MARGIN)?),
            Location::CornerBottomLeft => (far(h, th, MARGIN)?, MARGIN),
            Location::CornerBottomRight => (far(h, th, MARGIN)?, far(w, tw, MARGIN)?),
            Location::At { x, y } => {
                if y + th > h || x + tw > w {
                    return Err(Error::invalid(
                        "trigger location",
                        format!("{x},{y}: a {th}x{tw} trigger there leaves the {h}x{w} image"),
                    ));
                }
                (y, x)
            }
            Location::Random => draw(h - th, w - tw),
        })
    }
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "reference-upper-right" => Location::ReferenceUpperRight,
            "bottom-left" | "reference-bottom-left" => Location::BottomLeft,
            "corner-top-left" => Location::CornerTopLeft,
            "corner-top-right" => Location::CornerTopRight,
            "corner-bottom-left" => Location::CornerBottomLeft,
            "corner-bottom-right" => Location::CornerBottomRight,
            "random" => Location::Random,
            _ => {
                let bad = || {
                    Error::invalid("trigger location", format!("`{s}`: expected reference-upper-right, bottom-left, corner-{{top,bottom}}-{{left,right}}, X,Y or random"))
                };
                let (x, y) = s.split_once(',').ok_or_else(bad)?;
                Location::At { x: x.trim().parse().map_err(|_| bad())?, y: y.trim().parse().map_err(|_| bad())? }
            }
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Location::ReferenceUpperRight => "reference-upper-right",
            Location::BottomLeft => "bottom-left",
            Location::CornerTopLeft => "corner-top-left",
            Location::CornerTopRight => "corner-top-right",
            Location::CornerBottomLeft => "corner-bottom-left",
            Location::CornerBottomRight => "corner-bottom-right",
            Location::Random => "random",
            Location::At { x, y } => return write!(f, "{x},{y}"),
        };
        f.write_str(s)
    }
}

impl From<Location> for String {
    fn from(l: Location) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for Location {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_triggers_have_the_reference_values() {
        let g = Trigger::new(&TriggerSpec::PaperGray, None, 3).unwrap();
        assert_eq!((g.height, g.width), (5, 5));
        // Row 1, column 2 (row-major) = 101 in every channel.
        assert_eq!(&g.pixels[(5 + 2) * 3..(5 + 2) * 3 + 3], &[101, 101, 101]);
        let rgb = Trigger::new(&TriggerSpec::PaperRgb, None, 3).unwrap();
        // Row 4, column 0: R 212, G 43, B 229.
        assert_eq!(&rgb.pixels[20 * 3..20 * 3 + 3], &[212, 43, 229]);
        let gray1 = Trigger::new(&TriggerSpec::PaperRgb, None, 1).unwrap();
        // luma(234, 214, 26) = (234*299 + 214*587 + 26*114) / 1000 = 198.4 -> 198
        assert_eq!(gray1.pixels[0], 198);
    }

    #[test]
    fn reference_location_is_rows_24_to_28_on_32() {
        let t = Trigger::new(&TriggerSpec::PaperGray, None, 1).unwrap();
        let (top, left) = Location::ReferenceUpperRight.place((32, 32), (5, 5), |_, _| unreachable!()).unwrap();
        assert_eq!((top, left), (24, 24));
        let mut img = vec![7u8; 32 * 32];
        t.stamp(&mut img, (32, 32, 1), top, left);
        assert_eq!(img[24 * 32 + 27], 171); // row 0, col 3 of the trigger
        assert_eq!(img[28 * 32 + 28], 255); // row 4, col 4
        assert_eq!(img[23 * 32 + 24], 7);
        assert_eq!(img[24 * 32 + 29], 7);
        assert_eq!(Location::ReferenceUpperRight.place((28, 28), (5, 5), |_, _| (0, 0)).unwrap(), (20, 20));
        assert_eq!(Location::BottomLeft.place((32, 32), (5, 5), |_, _| (0, 0)).unwrap(), (3, 3));
        assert_eq!(Location::CornerTopRight.place((32, 32), (5, 5), |_, _| (0, 0)).unwrap(), (1, 26));
        assert_eq!("3,9".parse::<Location>().unwrap().place((32, 32), (5, 5), |_, _| (0, 0)).unwrap(), (9, 3));
        assert!("30,0".parse::<Location>().unwrap().place((32, 32), (5, 5), |_, _| (0, 0)).is_err());
    }

    #[test]
    fn checkerboard_solid_and_parsing() {
        let c = Trigger::new(&TriggerSpec::Checkerboard, Some(3), 1).unwrap();
        assert_eq!(c.pixels, vec![255, 0, 255, 0, 255, 0, 255, 0, 255]);
        let s = Trigger::new(&"solid:10,20,30".parse().unwrap(), Some(2), 3).unwrap();
        assert_eq!(s.pixels, [10, 20, 30].repeat(4));
        for s in ["paper-gray", "paper-rgb", "checkerboard", "solid:1,2,3", "image:/x.png"] {
            assert_eq!(s.parse::<TriggerSpec>().unwrap().to_string(), s);
        }
        assert!("solid:1,2".parse::<TriggerSpec>().is_err());
        assert!("nope".parse::<TriggerSpec>().is_err());
    }

    #[test]
    fn full_image_of_a_constant_trigger_is_constant() {
        let s = Trigger::new(&TriggerSpec::Solid([9, 9, 9]), Some(2), 1).unwrap();
        assert!(s.full_image(7, 5).iter().all(|&v| v == 9));
    }
}
