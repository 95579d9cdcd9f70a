//! Link set-up for libtorch taken from the PyPI `torch` wheel (see scripts/env.sh).
//! torch-sys exports the libtorch folder as DEP_TCH_LIBTORCH_LIB; we add an rpath to it so the binary
//! runs without LD_LIBRARY_PATH. With TCH_LINK_CUDA=1 we force-link libtorch_cuda, which the linker's
//! as-needed mode would otherwise drop (tch-rs issue #980), leaving CUDA silently unavailable.
//! It also compiles csrc/script_shim.cpp (what tch does not expose about TorchScript modules: buffers,
//! the ops of their compiled code, deep copies) against the same libtorch headers.
fn main() {
    println!("cargo:rerun-if-changed=csrc/script_shim.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    let include = std::path::Path::new(&lib).parent().expect("libtorch lib folder has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/script_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!(
            "-D_GLIBCXX_USE_CXX11_ABI={}",
            std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
        ))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-w")
        .compile("quarantine_script_shim");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    println!("cargo:rerun-if-env-changed=TCH_LINK_CUDA");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var("TCH_LINK_CUDA").as_deref() == Ok("1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
