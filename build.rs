//! Link set-up for libtorch taken from the PyPI `torch` wheel (see scripts/env.sh).
//! torch-sys exports the libtorch folder as DEP_TCH_LIBTORCH_LIB; we add an rpath to it so the binary
//! runs without LD_LIBRARY_PATH. With TCH_LINK_CUDA=1 we force-link libtorch_cuda, which the linker's
//! as-needed mode would otherwise drop (tch-rs issue #980), leaving CUDA silently unavailable.
fn main() {
    println!("cargo:rerun-if-env-changed=TCH_LINK_CUDA");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if std::env::var("TCH_LINK_CUDA").as_deref() == Ok("1") {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-L{lib}");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
