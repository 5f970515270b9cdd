/* XXH3-64 (seed 0) of every 4 KiB page of a buffer or of a file range, with the
 * GIL released so that Python threads hash on every core at once.
 *
 * The hashes equal xxhash.xxh3_64_intdigest of each page (tests check this).
 * Files are read with pread into one small buffer per thread, not mapped: a
 * file that shrinks while it is hashed ends in a short read, which is an
 * error the caller reports, where an mmap reader would die of SIGBUS.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#define PAGE 4096
/* Pages read per pread: 256 KiB stays in the core's cache for the hashing. */
#define BUFFER_PAGES 64
/* hash_piece's code for a file that ended early (errno values are positive). */
#define SHORT_READ (-1)

static void hash_run(const unsigned char *src, Py_ssize_t pages, unsigned char *out)
{
    for (Py_ssize_t i = 0; i < pages; i++) {
        XXH64_hash_t h = XXH3_64bits(src + i * PAGE, PAGE);
        memcpy(out + i * 8, &h, 8); /* native order, as numpy's uint64 */
    }
}

static int check_out(Py_buffer *out, Py_ssize_t pages)
{
    if (out->len < pages * 8) {
        PyErr_Format(PyExc_ValueError, "output holds %zd hashes, %zd pages given", out->len / 8, pages);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(hash_into_doc,
"hash_into(pages, out)\n\n"
"Write the XXH3-64 of each 4 KiB page of the bytes-like ``pages`` into the\n"
"writable buffer ``out`` (one native uint64 each).");

static PyObject *hash_into(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    if (!PyArg_ParseTuple(args, "y*w*", &src, &out))
        return NULL;
    Py_ssize_t pages = src.len / PAGE;
    PyObject *ret = NULL;
    if (src.len % PAGE) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes is not a whole number of %d-byte pages",
                     src.len, PAGE);
    } else if (check_out(&out, pages) == 0) {
        Py_BEGIN_ALLOW_THREADS
        hash_run(src.buf, pages, out.buf);
        Py_END_ALLOW_THREADS
        ret = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return ret;
}

PyDoc_STRVAR(hash_pieces_doc,
"hash_pieces(fd, pieces, next, out)\n\n"
"Hash pieces of the open file ``fd`` into the writable uint64 buffer ``out``.\n"
"``pieces`` holds int64 triples (byte offset, pages, index in out); ``next``\n"
"is a writable int64 that every calling thread increments atomically to take\n"
"the next piece, so threads calling this at once share the pieces without the\n"
"GIL. Returns when no piece is left; setting ``next`` past the last piece\n"
"stops every caller after its current piece.");

/* One piece: read it in buffers of BUFFER_PAGES pages and hash each. Returns 0,
 * an errno value, or SHORT_READ when the file ends before the piece does. */
static int hash_piece(int fd, long long offset, long long pages, unsigned char *out, unsigned char *buf)
{
    while (pages > 0) {
        long long n = pages < BUFFER_PAGES ? pages : BUFFER_PAGES;
        size_t want = (size_t)n * PAGE, got = 0;
        while (got < want) {
            ssize_t r = pread(fd, buf + got, want - got, (off_t)(offset + (long long)got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return errno;
            if (r == 0)
                return SHORT_READ;
            got += (size_t)r;
        }
        hash_run(buf, n, out);
        offset += (long long)want;
        out += n * 8;
        pages -= n;
    }
    return 0;
}

static PyObject *hash_pieces(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer pieces, next, out;
    if (!PyArg_ParseTuple(args, "iy*w*w*", &fd, &pieces, &next, &out))
        return NULL;
    PyObject *ret = NULL;
    const long long *p = pieces.buf;
    long long n = pieces.len / (3 * (Py_ssize_t)sizeof(long long));
    long long *counter = next.buf;
    struct stat st;
    if (pieces.len % (3 * sizeof(long long)) || next.len < (Py_ssize_t)sizeof(long long)) {
        PyErr_SetString(PyExc_ValueError, "pieces must be int64 triples and next one int64");
        goto done;
    }
    if (fstat(fd, &st) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    for (long long i = 0; i < n; i++) { /* check all first: a bad piece must not half-run */
        long long offset = p[3 * i], pages = p[3 * i + 1], at = p[3 * i + 2];
        long long slots = out.len / 8, size = st.st_size; /* divisions below: no overflow */
        if (offset < 0 || pages < 0 || at < 0 || at > slots || pages > slots - at) {
            PyErr_Format(PyExc_ValueError, "piece %lld (offset %lld, %lld pages, at %lld) is outside the output",
                         i, offset, pages, at);
            goto done;
        }
        if (offset > size || pages > (size - offset) / PAGE) {
            PyErr_Format(PyExc_ValueError, "%lld pages at offset %lld run past the end of the file (%lld bytes)",
                         pages, offset, size);
            goto done;
        }
    }
    int err = 0;
    unsigned char *buf = NULL;
    Py_BEGIN_ALLOW_THREADS
    buf = malloc((size_t)BUFFER_PAGES * PAGE);
    if (buf == NULL)
        err = ENOMEM;
    for (; !err;) {
        long long i = __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (i >= n)
            break;
        if (p[3 * i + 1] > 0)
            err = hash_piece(fd, p[3 * i], p[3 * i + 1], (unsigned char *)out.buf + p[3 * i + 2] * 8, buf);
        if (err) {
            __atomic_store_n(counter, n, __ATOMIC_RELAXED); /* the others stop too */
            break;
        }
    }
    free(buf);
    Py_END_ALLOW_THREADS
    if (err == SHORT_READ) {
        PyErr_SetString(PyExc_ValueError, "the file ended before the pages to hash: it shrank while it was read");
    } else if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        ret = Py_NewRef(Py_None);
    }
done:
    PyBuffer_Release(&pieces);
    PyBuffer_Release(&next);
    PyBuffer_Release(&out);
    return ret;
}

static PyMethodDef methods[] = {
    {"hash_into", hash_into, METH_VARARGS, hash_into_doc},
    {"hash_pieces", hash_pieces, METH_VARARGS, hash_pieces_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pagehash",
    "XXH3-64 of 4 KiB pages in C, with the GIL released (see xpipe.hashing).", -1, methods,
};

PyMODINIT_FUNC PyInit__pagehash(void) { return PyModule_Create(&module); }
