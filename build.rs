//! Builds vendor/libdeflate (libdeflate's compressor, patched; see its README.md) twice:
//! `deflate4k.c`, a 4 KiB match window for qcow2 clusters (QEMU inflates them with windowBits
//! −12), and `deflate_sync.c`, streams that end non-final and byte-aligned, for the parallel
//! gzip writer.

fn main() {
    let dir = "vendor/libdeflate";
    println!("cargo:rerun-if-changed={dir}");
    cc::Build::new()
        .file(format!("{dir}/deflate4k.c"))
        .file(format!("{dir}/deflate_sync.c"))
        // Optimised like the libdeflate-sys build even in the dev profile (the tests compress GiBs).
        .opt_level(2)
        // Upstream code: -Wextra's sign-compare notes are not ours to fix.
        .warnings(false)
        .compile("libdeflate_patched");
}
