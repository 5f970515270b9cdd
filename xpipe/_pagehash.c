/* XXH3-64 (seed 0) of every 4 KiB page of a buffer or of a file range, with the
 * GIL released so that Python threads hash on every core at once.
 *
 * The hashes equal xxhash.xxh3_64_intdigest of each page (tests check this).
 * Files are read through a private mmap window per call, unmapped before it
 * returns, so resident memory stays at one window per thread. A file that
 * shrinks while it is hashed raises SIGBUS, as any mmap reader would.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#define PAGE 4096

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

PyDoc_STRVAR(hash_file_into_doc,
"hash_file_into(fd, offset, pages, out)\n\n"
"Write the XXH3-64 of ``pages`` 4 KiB pages of the open file ``fd``, starting\n"
"at byte ``offset`` (any alignment), into the writable buffer ``out``.");

static PyObject *hash_file_into(PyObject *self, PyObject *args)
{
    int fd;
    long long offset;
    Py_ssize_t pages;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "iLnw*", &fd, &offset, &pages, &out))
        return NULL;
    PyObject *ret = NULL;
    struct stat st;
    if (offset < 0 || pages < 0) {
        PyErr_SetString(PyExc_ValueError, "offset and pages must not be negative");
    } else if (check_out(&out, pages) == 0) {
        if (fstat(fd, &st) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
        } else if (offset + (long long)pages * PAGE > (long long)st.st_size) {
            /* mapping past the end would fault with SIGBUS, not an error */
            PyErr_Format(PyExc_ValueError, "pages at offset %lld..%lld run past the end of the file (%lld bytes)",
                         offset, offset + (long long)pages * PAGE, (long long)st.st_size);
        } else if (pages == 0) {
            ret = Py_NewRef(Py_None);
        } else {
            long long start = offset - offset % sysconf(_SC_PAGESIZE); /* mmap wants an aligned offset */
            size_t len = (size_t)(offset - start) + (size_t)pages * PAGE;
            int err = 0;
            Py_BEGIN_ALLOW_THREADS
            unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, start);
            if (m == MAP_FAILED) {
                err = errno;
            } else {
                madvise(m, len, MADV_SEQUENTIAL);
                hash_run(m + (offset - start), pages, out.buf);
                munmap(m, len);
            }
            Py_END_ALLOW_THREADS
            if (err) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            } else {
                ret = Py_NewRef(Py_None);
            }
        }
    }
    PyBuffer_Release(&out);
    return ret;
}

static PyMethodDef methods[] = {
    {"hash_into", hash_into, METH_VARARGS, hash_into_doc},
    {"hash_file_into", hash_file_into, METH_VARARGS, hash_file_into_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pagehash",
    "XXH3-64 of 4 KiB pages in C, with the GIL released (see xpipe.hashing).", -1, methods,
};

PyMODINIT_FUNC PyInit__pagehash(void) { return PyModule_Create(&module); }
