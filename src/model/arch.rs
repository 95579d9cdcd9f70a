//! The architecture registry. Each architecture's facts live in its own file, in a unit struct
//! implementing [`ArchSpec`]: how to build the network, the names of its stem and head, its memory
//! budget for trigger reverse engineering, and how to read a foreign checkpoint of it.
//! [`architectures!`] turns one line per architecture into the public [`Arch`](super::Arch) enum
//! (with its [`Choice`](crate::choice::Choice) names and help) and its dispatch, `Arch::spec`.
//!
//! Adding an architecture: a file in `src/model/` with a type implementing [`Net`] and a unit struct
//! implementing [`ArchSpec`], its `mod` line and one line in the registry in `src/model/mod.rs`.
use tch::nn;
use torchfile::RawTensor;

use super::{ModelMeta, Net};

/// What the rest of the crate needs to know about one architecture.
pub(crate) trait ArchSpec: Sync {
    /// Creates the network's variables under `root` (PyTorch state-dict names) for `meta`'s input
    /// shape and classes, and returns its forward pass. Variables are created in a fixed order, so
    /// that `tch::manual_seed` gives reproducible weights. Fails only where building reads a file
    /// (a TorchScript archive).
    fn build(&self, root: &nn::Path, meta: &ModelMeta) -> crate::error::Result<Box<dyn Net>>;

    /// Name of the classification head's weight (`[classes, features]`).
    fn head(&self) -> &'static str;

    /// Name of the first conv weight (`[out, in_channels, k, k]`: it gives the input channels).
    fn stem(&self) -> &'static str;

    /// Images per forward pass of trigger reverse engineering at 32x32, where the activations kept
    /// for the backward pass fit the memory budget; [`Arch::reverse_images_per_pass`] scales it by
    /// input area. Measured peak memory with these budgets: BENCHMARKS.md.
    ///
    /// [`Arch::reverse_images_per_pass`]: super::Arch::reverse_images_per_pass
    fn reverse_images_at_32x32(&self) -> usize;

    /// Name prefixes other code bases give this architecture's tensors, as `(theirs, ours)` pairs
    /// (e.g. `("linear.", "fc.")`): a foreign checkpoint's tensor `theirs...` loads into `ours...`.
    fn import_aliases(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The input side (height = width) that a foreign checkpoint's tensors imply, where the
    /// architecture's weight shapes depend on it; `None` where they do not.
    fn image_size(&self, _tensors: &[(String, RawTensor)]) -> Option<usize> {
        None
    }
}

/// Defines `pub enum Arch` from lines `Variant => module::Spec, "name": "help";`: the enum (serde
/// and [`Choice`](crate::choice::Choice) both spell each variant `name`), its `Choice`
/// implementation, and `Arch::spec`, which returns the variant's [`ArchSpec`].
macro_rules! architectures {
    ($($variant:ident => $spec:path, $name:literal : $help:literal;)+) => {
        /// A network architecture: the registry in `src/model/mod.rs`, each one's facts in its file.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum Arch {
            $(
                #[doc = $help]
                #[serde(rename = $name)]
                $variant,
            )+
        }

        $crate::choices!(Arch { $($variant => $name : $help),+ });

        impl Arch {
            /// This architecture's facts.
            pub(crate) fn spec(self) -> &'static dyn $crate::model::arch::ArchSpec {
                match self {
                    $(Arch::$variant => &$spec,)+
                }
            }
        }
    };
}
pub(crate) use architectures;
