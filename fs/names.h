/*
 * names.h -- the names of the tree: which Azure names rpfs accepts when it
 * creates something, which entry names are fixed files, how a resource
 * whose name clashes with a fixed file stays reachable, how disk files are
 * named, and the few pieces of an ARM id that fs/ needs.
 *
 * Pure functions on strings: no I/O, no locks, no allocation except where
 * a function says so.  docs/tree.md is the user's view of these rules.
 */
#ifndef RPFS_NAMES_H
#define RPFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../net/az.h"

/* Longest collection or restore point name Azure accepts. */
#define NAMES_RESOURCE_MAX 80
/* Prefix that makes a clashing restore point reachable ("@status"). */
#define NAMES_CLASH_PREFIX '@'

/*
 * A name rpfs may create as a restore point collection or restore point:
 * 1-80 characters from [A-Za-z0-9_.-], starting with a letter, digit or
 * '_', not ending with '.' (Azure's rule for Microsoft.Compute names of
 * this family; the leading-character rule is ours, so that no created
 * name is a dot file or looks like a command-line option).
 */
bool names_valid_resource(const char *name);

/* A managed disk name: 1-80 characters from [A-Za-z0-9_.-], starting with
 * a letter, digit or '_', not ending with '.' (exclude_disks entries). */
bool names_valid_disk(const char *name);

/* A bare VM name in a collection's `source`: 1-64 characters from
 * [A-Za-z0-9_.-], not starting with '_' '.' '-', not ending with '.' '-'. */
bool names_valid_vm(const char *name);

/* A region name in `location`: 1-64 characters from [A-Za-z0-9]. */
bool names_valid_location(const char *name);

/* Is name one of the fixed files of a collection directory? (exact) */
bool names_is_collection_file(const char *name);

/*
 * The directory entry of restore point rp_name inside its collection:
 * the name itself, or "@" + name when the name is one of the collection's
 * fixed files.  Azure never allows '@' in a name, so "@..." entries can
 * not clash with anything.  Returns 0, or -ENAMETOOLONG.
 */
int names_rp_entry(const char *rp_name, char *out, size_t outlen);

/*
 * The reverse: the restore point name an entry of a collection directory
 * stands for.  Returns 0 (out filled), or -ENOENT when entry is a fixed
 * file or an "@" form that names no fixed file.
 */
int names_rp_from_entry(const char *entry, char *out, size_t outlen);

/*
 * File names of the disks of one restore point, in the order of disks:
 * "<disk name>.vhd".  When two disks would get the same name (compared
 * case-insensitively), every disk of that group is named after its disk
 * restore point instead ("<drp name>.vhd", unique within a restore point)
 * so names never depend on listing order.  A disk without a name uses its
 * drp name too, and "disk<N>.vhd" when even that is missing.  *files is
 * allocated (free with names_list_free); returns 0 or -ENOMEM.
 */
int names_disk_files(const struct az_disk *disks, size_t n, char ***files);

void names_list_free(char **list, size_t n);

/*
 * The segment that follows key (compared case-insensitively) in an ARM
 * id: names_id_part(".../resourceGroups/rg1/...", "resourceGroups") is
 * "rg1".  Returns 0, -ENOENT when key is absent, -ENAMETOOLONG.
 */
int names_id_part(const char *id, const char *key, char *out, size_t outlen);

/* Does id name a restore point collection (a copy's source)? */
bool names_id_is_collection(const char *id);

/*
 * Parse an ISO-8601 UTC-offset time as Azure writes it
 * ("2021-01-27T20:35:05.8401519+00:00", "...Z").  Returns 0 and *out
 * (seconds since the epoch), or -EINVAL.
 */
int names_parse_time(const char *s, time_t *out);

#endif
