/*
 * libdeflate's compressor (lib/deflate_compress.c, with a 4 KiB match window) and its
 * allocation helpers (lib/utils.c) as one translation unit, for qcow2 clusters; build.rs
 * compiles it beside deflate_sync.c.
 *
 * Every external symbol is renamed with a deflate4k_ prefix: the libdeflate-sys crate links
 * the unmodified library (32 KiB window) into the same binary under the original names, and
 * deflate_sync.c its own build.
 */
#define libdeflate_alloc_compressor		deflate4k_alloc_compressor
#define libdeflate_alloc_compressor_ex		deflate4k_alloc_compressor_ex
#define libdeflate_deflate_compress		deflate4k_deflate_compress
#define libdeflate_deflate_compress_bound	deflate4k_deflate_compress_bound
#define libdeflate_free_compressor		deflate4k_free_compressor
#define libdeflate_get_compression_level	deflate4k_get_compression_level
#define libdeflate_default_malloc_func		deflate4k_default_malloc_func
#define libdeflate_default_free_func		deflate4k_default_free_func
#define libdeflate_aligned_malloc		deflate4k_aligned_malloc
#define libdeflate_aligned_free			deflate4k_aligned_free
#define libdeflate_set_memory_allocator		deflate4k_set_memory_allocator
#define libdeflate_assertion_failed		deflate4k_assertion_failed

/* A 4 KiB match window: QEMU inflates compressed qcow2 clusters with windowBits 12. */
#define MATCHFINDER_WINDOW_ORDER		12

#include "lib/utils.c"
#include "lib/deflate_compress.c"
