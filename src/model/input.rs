//! The one check that images fit a model's input.
use super::ModelMeta;
use crate::data::ImageSet;
use crate::error::{Error, Result};

impl ModelMeta {
    /// Errs, naming `what` and both shapes, unless `images` are C x H x W images of this model's
    /// input shape.
    pub fn check_images(&self, images: &ImageSet, what: &'static str) -> Result<()> {
        let got = (images.channels, images.height, images.width);
        let want = (self.in_channels, self.height, self.width);
        if got == want {
            return Ok(());
        }
        Err(Error::invalid(what, format!("{}x{}x{} images but the model takes {}x{}x{}", got.0, got.1, got.2, want.0, want.1, want.2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;

    #[test]
    fn a_mismatch_names_both_shapes() {
        let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10 };
        let mut set = crate::data::noise_set(2, (28, 28, 1), &crate::data::Normalization::mnist(), 10, 0);
        assert!(meta.check_images(&set, "test images").is_ok());
        set.channels = 3;
        let e = meta.check_images(&set, "test images").unwrap_err().to_string();
        assert!(e.contains("test images") && e.contains("3x28x28") && e.contains("1x28x28"), "{e}");
    }
}
