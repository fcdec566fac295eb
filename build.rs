//! Builds vendor/libdeflate-4k: libdeflate's compressor with a 4 KiB match window, for qcow2
//! (QEMU inflates compressed clusters with windowBits −12). See its README.md.

fn main() {
    let dir = "vendor/libdeflate-4k";
    println!("cargo:rerun-if-changed={dir}");
    cc::Build::new()
        .file(format!("{dir}/deflate4k.c"))
        // Optimised like the libdeflate-sys build even in the dev profile (the tests compress GiBs).
        .opt_level(2)
        // Upstream code, kept unmodified: -Wextra's sign-compare notes are not ours to fix.
        .warnings(false)
        .compile("deflate4k");
}
