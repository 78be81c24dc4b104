/* The two per-token loops of the aligner's common case, compiled (optional: the pure-Python code in
 * sra_viz/tokenization.py and sra_viz/alignment.py gives the same results and runs when this module is
 * not built).
 *
 *   spelled_ends(ids, table, data) -> (ends, all_nonempty) | None
 *       The tokens' bytes ``table[id]``, laid end to end, are exactly ``data``: then ``ends[k]`` is the
 *       byte end of token k (the running sum of their lengths) and ``all_nonempty`` says no token spells
 *       zero bytes. None when they are not ``data``. IndexError for an id outside ``table`` (the caller
 *       builds or grows the table and asks again).
 *       Python: pieces = [table[i] for i in ids]; if b"".join(pieces) == data:
 *               return list(itertools.accumulate(map(len, pieces))), all(pieces)
 *
 *   common_ends(a, b) -> (bounds, a_closes, b_closes)
 *       Two strictly increasing lists of token ends: the ends both hold, after a leading 0, and for each
 *       the number of a's and of b's ends up to it (1-based positions). Linear two-pointer merge.
 *       Python: alignment._merge_tilings.
 *
 * Lists in, lists out; no Python call per token.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
spelled_ends(PyObject *self, PyObject *args)
{
    PyObject *ids, *table, *ends = NULL;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O!O!y*", &PyList_Type, &ids, &PyList_Type, &table, &data))
        return NULL;
    const char *text = (const char *)data.buf;
    const Py_ssize_t n_bytes = data.len, n_ids = PyList_GET_SIZE(ids), n_table = PyList_GET_SIZE(table);
    Py_ssize_t cursor = 0;
    int all_nonempty = 1, spells = 1;
    ends = PyList_New(n_ids);
    if (ends == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < n_ids; k++) {
        Py_ssize_t id = PyLong_AsSsize_t(PyList_GET_ITEM(ids, k));
        if (id == -1 && PyErr_Occurred())
            goto fail;
        if (id < 0 || id >= n_table) {
            PyErr_Format(PyExc_IndexError, "token id %zd outside the spelling table (%zd entries)", id, n_table);
            goto fail;
        }
        PyObject *piece = PyList_GET_ITEM(table, id);
        if (!PyBytes_Check(piece)) {
            PyErr_SetString(PyExc_TypeError, "spelling table entries must be bytes");
            goto fail;
        }
        const Py_ssize_t size = PyBytes_GET_SIZE(piece);
        if (size > n_bytes - cursor || memcmp(text + cursor, PyBytes_AS_STRING(piece), size) != 0) {
            spells = 0;
            break;
        }
        all_nonempty &= size > 0;
        cursor += size;
        PyObject *end = PyLong_FromSsize_t(cursor);
        if (end == NULL)
            goto fail;
        PyList_SET_ITEM(ends, k, end);
    }
    PyBuffer_Release(&data);
    if (!spells || cursor != n_bytes) {
        Py_DECREF(ends);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NO)", ends, all_nonempty ? Py_True : Py_False);
fail:
    Py_XDECREF(ends);
    PyBuffer_Release(&data);
    return NULL;
}

static int
append_new(PyObject *list, Py_ssize_t value)
{
    PyObject *item = PyLong_FromSsize_t(value);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

static PyObject *
common_ends(PyObject *self, PyObject *args)
{
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &a, &PyList_Type, &b))
        return NULL;
    const Py_ssize_t n_a = PyList_GET_SIZE(a), n_b = PyList_GET_SIZE(b);
    PyObject *bounds = PyList_New(0), *a_closes = PyList_New(0), *b_closes = PyList_New(0);
    if (bounds == NULL || a_closes == NULL || b_closes == NULL || append_new(bounds, 0))
        goto fail;
    Py_ssize_t i = 0, j = 0;
    while (i < n_a && j < n_b) {
        PyObject *end_a = PyList_GET_ITEM(a, i);
        const Py_ssize_t va = PyLong_AsSsize_t(end_a), vb = PyLong_AsSsize_t(PyList_GET_ITEM(b, j));
        if ((va == -1 || vb == -1) && PyErr_Occurred())
            goto fail;
        if (va == vb) {
            if (PyList_Append(bounds, end_a) || append_new(a_closes, i + 1) || append_new(b_closes, j + 1))
                goto fail;
            i++;
            j++;
        } else if (va < vb) {
            i++;
        } else {
            j++;
        }
    }
    return Py_BuildValue("(NNN)", bounds, a_closes, b_closes);
fail:
    Py_XDECREF(bounds);
    Py_XDECREF(a_closes);
    Py_XDECREF(b_closes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"spelled_ends", spelled_ends, METH_VARARGS,
     "spelled_ends(ids, table, data) -> (ends, all_nonempty) | None: byte ends of tokens spelling data"},
    {"common_ends", common_ends, METH_VARARGS,
     "common_ends(a, b) -> (bounds, a_closes, b_closes): the ends two increasing lists share"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef span_ends_module = {
    PyModuleDef_HEAD_INIT, "sra_viz._span_ends", "The aligner's per-token loops, compiled.", -1, methods,
};

PyMODINIT_FUNC
PyInit__span_ends(void)
{
    return PyModule_Create(&span_ends_module);
}
