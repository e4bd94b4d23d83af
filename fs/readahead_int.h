/*
 * readahead_int.h -- shared by readahead.c (the cache) and
 * readahead_policy.c (policy and buffer memory).
 */
#ifndef RPFS_READAHEAD_INT_H
#define RPFS_READAHEAD_INT_H

#include <stddef.h>

#include "readahead.h"

#define KiB 1024LL
#define MiB (1024LL * 1024)

/* Capacity of the buffer that holds size bytes (the chunk size for big
 * ones, so that they can be pooled). */
size_t ra_buf_cap(size_t size);
/* A buffer for size bytes; *cap receives its capacity.  Counted in the
 * global bytes until ra_buf_put. */
char *ra_buf_get(size_t size, size_t *cap);
void ra_buf_put(char *b, size_t cap);
/* The first cache fixes the pooled size (all disks share chunk_size). */
void ra_pool_init(size_t chunk);
/* Bytes in use and the cap, for make_room. */
size_t ra_global_cap(void);

#endif
