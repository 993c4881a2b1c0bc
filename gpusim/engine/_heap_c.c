/* heappush and heappop for the engine's heaps of tuples: the twins of the standard library's
 * heapq.heappush and heapq.heappop (CPython's Modules/_heapqmodule.c), with the same sifting, so
 * the same list after every call, and a faster "less than" for tuples.
 *
 * The engine's heaps hold tuples led by a float and ints (SimPy's queue: (time, priority, id,
 * event); the fluid network's: (time or bytes, sequence, object)). heapq compares two entries
 * with the tuple comparison, which calls the generic comparison twice per element (== to find
 * the first differing one, then <) through boxed objects: about 15 % of a FlashMoE DES's
 * instructions. Here an element pair that is two floats or two ints that fit a C long is
 * compared in C; any other pair, and entries that are not tuples, take Python's own comparisons,
 * in the tuple comparison's order (identity, ==, then <). So the outcome of every comparison is
 * Python's, and the heap is heapq's to the list's layout (tests/test_native.py compares the two
 * on random operations). gpusim/engine/heap.py picks these where the compiled engine runs
 * (gpusim/native.py), heapq's elsewhere. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* a < b as Python decides it: 1, 0, or -1 with an exception set */
static int less(PyObject *a, PyObject *b) {
    if (!PyTuple_CheckExact(a) || !PyTuple_CheckExact(b)) {
        return PyObject_RichCompareBool(a, b, Py_LT);
    }
    Py_ssize_t na = PyTuple_GET_SIZE(a), nb = PyTuple_GET_SIZE(b);
    Py_ssize_t n = na < nb ? na : nb;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyTuple_GET_ITEM(a, i), *y = PyTuple_GET_ITEM(b, i);
        if (x == y) continue; /* the tuple comparison's == holds for one object */
        if (PyFloat_CheckExact(x) && PyFloat_CheckExact(y)) {
            double dx = PyFloat_AS_DOUBLE(x), dy = PyFloat_AS_DOUBLE(y);
            if (dx == dy) continue;
            return dx < dy; /* NaN: == fails, then < is false, as in Python */
        }
        if (PyLong_CheckExact(x) && PyLong_CheckExact(y)) {
            int overflow_x, overflow_y;
            long lx = PyLong_AsLongAndOverflow(x, &overflow_x);
            long ly = PyLong_AsLongAndOverflow(y, &overflow_y);
            if (!overflow_x && !overflow_y) {
                if (lx == ly) continue;
                return lx < ly;
            } /* beyond a C long (overflow sets no exception): Python compares them below */
        }
        Py_INCREF(x);
        Py_INCREF(y);
        int equal = PyObject_RichCompareBool(x, y, Py_EQ);
        int result = equal == 0 ? PyObject_RichCompareBool(x, y, Py_LT) : equal;
        Py_DECREF(x);
        Py_DECREF(y);
        if (equal < 0 || result < 0) return -1;
        if (equal) continue;
        return result;
    }
    return na < nb;
}

/* CPython's siftdown: follow the path to the root, moving parents down until finding a place
 * newitem fits */
static int siftdown(PyListObject *heap, Py_ssize_t startpos, Py_ssize_t pos) {
    Py_ssize_t size = PyList_GET_SIZE(heap);
    if (pos >= size) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return -1;
    }
    PyObject **arr = heap->ob_item;
    PyObject *newitem = arr[pos];
    while (pos > startpos) {
        Py_ssize_t parentpos = (pos - 1) >> 1;
        PyObject *parent = arr[parentpos];
        Py_INCREF(newitem);
        Py_INCREF(parent);
        int cmp = less(newitem, parent);
        Py_DECREF(parent);
        Py_DECREF(newitem);
        if (cmp < 0) return -1;
        if (size != PyList_GET_SIZE(heap)) {
            PyErr_SetString(PyExc_RuntimeError, "list changed size during iteration");
            return -1;
        }
        if (cmp == 0) break;
        arr = heap->ob_item;
        parent = arr[parentpos];
        newitem = arr[pos];
        arr[parentpos] = newitem;
        arr[pos] = parent;
        pos = parentpos;
    }
    return 0;
}

/* CPython's siftup: bubble the smaller child up to a leaf, then sift the item down */
static int siftup(PyListObject *heap, Py_ssize_t pos) {
    Py_ssize_t endpos = PyList_GET_SIZE(heap);
    Py_ssize_t startpos = pos;
    if (pos >= endpos) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return -1;
    }
    PyObject **arr = heap->ob_item;
    Py_ssize_t limit = endpos >> 1; /* the smallest position without a child */
    while (pos < limit) {
        Py_ssize_t childpos = 2 * pos + 1;
        if (childpos + 1 < endpos) {
            PyObject *a = arr[childpos];
            PyObject *b = arr[childpos + 1];
            Py_INCREF(a);
            Py_INCREF(b);
            int cmp = less(a, b);
            Py_DECREF(a);
            Py_DECREF(b);
            if (cmp < 0) return -1;
            childpos += ((unsigned)cmp ^ 1); /* the right child unless the left is less */
            arr = heap->ob_item;
            if (endpos != PyList_GET_SIZE(heap)) {
                PyErr_SetString(PyExc_RuntimeError, "list changed size during iteration");
                return -1;
            }
        }
        PyObject *child = arr[childpos];
        arr[childpos] = arr[pos];
        arr[pos] = child;
        pos = childpos;
    }
    return siftdown(heap, startpos, pos);
}

static PyObject *heappush(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "heappush(heap: list, item)");
        return NULL;
    }
    PyObject *heap = args[0];
    if (PyList_Append(heap, args[1]) < 0) return NULL;
    if (siftdown((PyListObject *)heap, 0, PyList_GET_SIZE(heap) - 1) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *heappop(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 1 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "heappop(heap: list)");
        return NULL;
    }
    PyObject *heap = args[0];
    Py_ssize_t n = PyList_GET_SIZE(heap);
    if (n == 0) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    PyObject *lastelt = PyList_GET_ITEM(heap, n - 1);
    Py_INCREF(lastelt);
    if (PyList_SetSlice(heap, n - 1, n, NULL)) {
        Py_DECREF(lastelt);
        return NULL;
    }
    n--;
    if (!n) return lastelt;
    PyObject *returnitem = PyList_GET_ITEM(heap, 0);
    PyList_SET_ITEM(heap, 0, lastelt); /* the list's reference to returnitem passes to us */
    if (siftup((PyListObject *)heap, 0)) {
        Py_DECREF(returnitem);
        return NULL;
    }
    return returnitem;
}

static PyMethodDef methods[] = {
    {"heappush", (PyCFunction)(void (*)(void))heappush, METH_FASTCALL,
     "heappush(heap, item): heapq.heappush, the same list after it, tuples compared in C."},
    {"heappop", (PyCFunction)(void (*)(void))heappop, METH_FASTCALL,
     "heappop(heap): heapq.heappop, the same list after it, tuples compared in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_heap_c",
    .m_doc = "heapq's heappush and heappop with tuples of floats and ints compared in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__heap_c(void) { return PyModule_Create(&module); }
