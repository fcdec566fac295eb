/*
 * libdeflate's compressor (lib/deflate_compress.c) with its normal 32 KiB match window and
 * DEFLATE_SYNC_END: every stream it writes ends non-final and byte-aligned, like zlib's
 * Z_SYNC_FLUSH, so that blocks compressed on different cores concatenate into one gzip
 * member (src/parallel/gzip.rs). One translation unit with lib/utils.c, as deflate4k.c.
 *
 * Every external symbol is renamed with a deflate_sync_ prefix: the libdeflate-sys crate links
 * the unmodified library into the same binary under the original names, and deflate4k.c its
 * 4 KiB-window copy.
 */
#define libdeflate_alloc_compressor		deflate_sync_alloc_compressor
#define libdeflate_alloc_compressor_ex		deflate_sync_alloc_compressor_ex
#define libdeflate_deflate_compress		deflate_sync_deflate_compress
#define libdeflate_deflate_compress_bound	deflate_sync_deflate_compress_bound
#define libdeflate_free_compressor		deflate_sync_free_compressor
#define libdeflate_get_compression_level	deflate_sync_get_compression_level
#define libdeflate_default_malloc_func		deflate_sync_default_malloc_func
#define libdeflate_default_free_func		deflate_sync_default_free_func
#define libdeflate_aligned_malloc		deflate_sync_aligned_malloc
#define libdeflate_aligned_free			deflate_sync_aligned_free
#define libdeflate_set_memory_allocator		deflate_sync_set_memory_allocator
#define libdeflate_assertion_failed		deflate_sync_assertion_failed

/* The normal window. */
#define MATCHFINDER_WINDOW_ORDER		DEFLATE_WINDOW_ORDER
#define DEFLATE_SYNC_END

#include "lib/utils.c"
#include "lib/deflate_compress.c"
