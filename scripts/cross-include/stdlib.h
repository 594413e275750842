/* A stand-in for the macOS SDK's stdlib.h, used only when scripts/test checks the macOS
 * targets from Linux with clang and no SDK (`-nostdlibinc`): clang's own mm_malloc.h,
 * which ring's x86-64 C code reaches through immintrin.h, includes it. Nothing is
 * linked, so declarations are enough. */
#ifndef STDLIB_STAND_IN
#define STDLIB_STAND_IN
#include <stddef.h>
void *malloc(size_t size);
void free(void *ptr);
int posix_memalign(void **ptr, size_t alignment, size_t size);
#endif
