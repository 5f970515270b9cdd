/* XXH3-64 (seed 0) of every 4 KiB page of a buffer or of a file range, with the
 * GIL released so that Python threads hash on every core at once.
 *
 * The hashes equal xxhash.xxh3_64_intdigest of each page (tests check this).
 * Files are read through one mmap window per piece, unmapped before the next,
 * so resident memory stays at one window per thread (mmap, not read: no copy,
 * the fastest way here). A file cut short while it is mapped makes the kernel
 * send SIGBUS to the reading thread; a handler installed for the duration of
 * the hashing jumps back out of that piece, which then fails as a short file.
 * A SIGBUS that is not the hashing's goes on to the handler it replaced.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#define PAGE 4096
/* hash_piece's code for a file that ended early (errno values are positive). */
#define SHORT_READ (-1)

/* Where a hashing thread resumes after SIGBUS in its mapped window; NULL outside one. */
/* volatile: the stores around hash_run must happen, though nothing in between reads them */
static __thread sigjmp_buf *volatile resume_at = NULL;
static struct sigaction replaced; /* the SIGBUS handler before ours */
static int hashing_calls = 0;     /* hash_pieces calls running; changed with the GIL held */

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    sigjmp_buf *at = resume_at;
    if (at != NULL)
        siglongjmp(*at, 1);
    /* not a hashing fault: put the replaced handler back; the faulting access repeats into it */
    sigaction(SIGBUS, &replaced, NULL);
    (void)sig, (void)info, (void)context;
}

/* Install on_sigbus while any hash_pieces call runs (GIL held: calls are counted one at a time). */
static int sigbus_enter(void)
{
    if (hashing_calls++ > 0)
        return 0;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_sigbus;
    ours.sa_flags = SA_SIGINFO;
    sigemptyset(&ours.sa_mask);
    return sigaction(SIGBUS, &ours, &replaced);
}

static void sigbus_leave(void)
{
    if (--hashing_calls == 0)
        sigaction(SIGBUS, &replaced, NULL);
}

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

/* One piece: map its window of the file (mmap wants an aligned offset), hash, unmap.
 * Returns 0, an errno value, or SHORT_READ when the file was cut short under the window. */
static int hash_piece(int fd, long long offset, long long pages, unsigned char *out)
{
    long long start = offset - offset % sysconf(_SC_PAGESIZE);
    size_t len = (size_t)(offset - start) + (size_t)pages * PAGE;
    unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, start);
    if (m == MAP_FAILED)
        return errno;
    sigjmp_buf here;
    if (sigsetjmp(here, 1) != 0) { /* SIGBUS: the file ended inside the window */
        resume_at = NULL;
        munmap(m, len);
        return SHORT_READ;
    }
    resume_at = &here;
    hash_run(m + (offset - start), pages, out);
    resume_at = NULL;
    munmap(m, len);
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
            /* mapping past the end would fault with SIGBUS: refuse it before mapping */
            PyErr_Format(PyExc_ValueError, "%lld pages at offset %lld run past the end of the file (%lld bytes)",
                         pages, offset, size);
            goto done;
        }
    }
    if (sigbus_enter() != 0) {
        sigbus_leave();
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        long long i = __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (i >= n)
            break;
        if (p[3 * i + 1] > 0)
            err = hash_piece(fd, p[3 * i], p[3 * i + 1], (unsigned char *)out.buf + p[3 * i + 2] * 8);
        if (err) {
            __atomic_store_n(counter, n, __ATOMIC_RELAXED); /* the others stop too */
            break;
        }
    }
    Py_END_ALLOW_THREADS
    sigbus_leave();
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
