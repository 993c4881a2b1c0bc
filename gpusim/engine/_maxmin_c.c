/* The fluid network's max-min solves and settle steps in C, twins of Python code that stays the
 * reference:
 *
 * - max_min_fair_rates: gpusim/engine/maxmin.py's max_min_fair_rates (its _Loads, _one_level_of,
 *   _fill and _fix, with the one-level closed form and the last-round shortcut on);
 * - ClassTable: the network's classes as its settles read them (per class its entry order,
 *   route, cap, list of flows, clock, standing contribution and completion times; per resource
 *   the classes crossing it and the resource's ledger), kept by gpusim/engine/fluid.py's
 *   FluidNetwork where the compiled engine runs, with the settle's steps that read them:
 *   - component: FluidNetwork._component (the walk that finds what a settle must re-solve: the
 *     same classes in their entry order, the same resources ascending, the same changed
 *     classes and loose resources);
 *   - solve_without: FluidNetwork._solve_without with its _cut and _fills (the optimistic
 *     solve of a component, its loose resources masked out of the routes and checked after),
 *     and the general solves of _solve_leaving and _solve;
 *   - retime, rerate, clock, state: FluidNetwork._retime's loop and _FlowClass's set_rate,
 *     retime and virtual_at on the records' clocks;
 *   - settle: _settle's general path in one call (the steps above, the growth of the
 *     component, _retime_begin and _retime_end), each load read once as a double;
 *   - the completion index (retimed, next_completion, due): two heaps kept in place where
 *     _reschedule and _candidates use the _check heap of tuples;
 *   - peaks: _retime_end's; flush and ledger: FluidNetwork._flush on C doubles.
 *
 * Each does the same IEEE double operations in the same order as its twin, so it gives the same
 * floats and the same orders: the compiled engine calls these where the Python would run
 * (gpusim/native.py decides; tests/test_engine_properties.py compares each with its twin, bit
 * for bit). What they save is mypyc's boxed floats, generic lists, set lookups and method
 * lookups on objects it does not compile: the solves work on C arrays, the walk on stamps, both
 * on the table's records. Build with floating-point contraction off (setup.py): a fused
 * multiply-add would round once where Python rounds twice.
 *
 * Inputs as the Python takes them: routes (a sequence of sequences of resource indices), counts
 * (flows per class), caps_Bps (per-flow caps, inf for none) and capacity_Bps (per resource).
 * Every resource index must lie in capacity_Bps (negative ones are refused, where Python would
 * count them from the end: no caller makes one). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double REL_TOL = 1e-12; /* maxmin.py's _REL_TOL (the module's REL_TOL: a test compares) */

/* A bump allocator for one solve's arrays: taken from one block, all given back at once by
 * arena_reset (no malloc and free per array: a solve takes about twenty). A request past the
 * block gets a block of its own, freed at the reset, which then grows the block to fit. */
typedef struct {
    char *base;
    size_t used, size;
    size_t spilled; /* bytes taken past the block since the last reset */
    void **spills;
    Py_ssize_t n_spills, size_spills;
} Arena;

/* ``bytes`` from the arena (16-byte aligned), or NULL with nothing set (the caller raises). */
static void *arena_take(Arena *a, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (a->used + bytes <= a->size) {
        void *out = a->base + a->used;
        a->used += bytes;
        return out;
    }
    if (a->n_spills == a->size_spills) {
        Py_ssize_t size = 2 * a->size_spills + 8;
        void **spills = realloc(a->spills, sizeof(void *) * (size_t)size);
        if (!spills) return NULL;
        a->spills = spills;
        a->size_spills = size;
    }
    void *out = malloc(bytes);
    if (!out) return NULL;
    a->spills[a->n_spills++] = out;
    a->spilled += bytes;
    return out;
}

/* ``bytes`` of zeros from the arena, or NULL. */
static void *arena_zeros(Arena *a, size_t bytes) {
    void *out = arena_take(a, bytes);
    if (out) memset(out, 0, bytes);
    return out;
}

/* Give back everything taken; a block that overflowed since the last reset grows to fit. */
static void arena_reset(Arena *a) {
    for (Py_ssize_t i = 0; i < a->n_spills; i++) free(a->spills[i]);
    a->n_spills = 0;
    if (a->spilled) {
        size_t size = 2 * (a->used + a->spilled);
        free(a->base);
        a->base = malloc(size);
        a->size = a->base ? size : 0;
    }
    a->used = a->spilled = 0;
}

static void arena_free(Arena *a) {
    arena_reset(a);
    free(a->base);
    free(a->spills);
    memset(a, 0, sizeof(*a));
}

/* max_min_fair_rates' arena (the module function runs under the GIL, one call at a time). */
static Arena module_arena;

typedef struct {
    Arena *arena;          /* where every array below is taken from */
    Py_ssize_t n;          /* classes */
    Py_ssize_t n_res;      /* distinct resources crossed by classes with flows */
    long *counts;          /* per class: flows */
    double *caps;          /* per class: per-flow cap */
    Py_ssize_t *full_at;   /* per class: where its whole route starts in full (n + 1 entries) */
    Py_ssize_t *full;      /* resource indices of every class's whole route, class after class */
    Py_ssize_t *route_at;  /* per class: where its route starts in route (n + 1 entries) */
    Py_ssize_t *route;     /* local resource numbers, class after class (none for w <= 0) */
    double *left;          /* per resource: capacity less what fixed classes draw */
    long *flows;           /* per resource: flows of unfixed classes, once per crossing */
    Py_ssize_t *users_at;  /* per resource: where its users start in users (n_res + 1) */
    Py_ssize_t *users;     /* per resource: the classes crossing it, in class order */
    int routeless;         /* some class with flows crosses no resource */
} Problem;

/* ``item`` as an index into a per-resource list of ``n_res`` entries (named ``list_name`` in
 * the error) into *r: 0, or -1 with the int conversion's error or an IndexError set (a negative
 * index too, which Python would count from the end). */
static int resource_index(PyObject *item, Py_ssize_t n_res, const char *list_name,
                          Py_ssize_t *r) {
    *r = PyLong_AsSsize_t(item);
    if (*r == -1 && PyErr_Occurred()) return -1;
    if (*r < 0 || *r >= n_res) {
        PyErr_Format(PyExc_IndexError, "resource %zd is not in %s", *r, list_name);
        return -1;
    }
    return 0;
}

/* Number the resources of a problem whose counts, caps and full routes are set (p->n,
 * p->counts, p->caps, p->full_at, p->full) by first appearance (class order, then route order),
 * as maxmin._Loads does, each starting at its capacity (``capacity``, indexed by resource, or
 * ``cut[r]`` where ``cut`` is given and ``in_cut[r]`` is set); a resource marked in ``excluded``
 * (NULL: none) is left out of every route, as if the routes had been given without it (the
 * whole routes stay in full). ``number`` (per resource) must hold -1
 * for every resource the routes cross, and does again on return. Returns 0, or -1 with a Python
 * exception set; its arrays are p->arena's (the caller resets it). */
static int problem_index(Problem *p, PyObject *const *capacity, const char *excluded,
                         const double *cut, const char *in_cut, Py_ssize_t *number) {
    Py_ssize_t n = p->n, at_full = p->full_at[n], *next_user = NULL;
    int status = -1;
    Arena *a = p->arena;
    p->route_at = arena_take(a, sizeof(Py_ssize_t) * (size_t)(n + 1));
    p->left = arena_take(a, sizeof(double) * (size_t)(at_full + 1));
    p->flows = arena_take(a, sizeof(long) * (size_t)(at_full + 1));
    p->route = arena_take(a, sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    p->users_at = arena_zeros(a, sizeof(Py_ssize_t) * (size_t)(at_full + 2));
    p->users = arena_take(a, sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    next_user = arena_take(a, sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    if (!p->route_at || !p->route || !p->left || !p->flows || !p->users_at || !p->users ||
        !next_user) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0, n_res = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        p->route_at[c] = at;
        long w = p->counts[c];
        if (w <= 0) continue;
        Py_ssize_t start = at;
        for (Py_ssize_t k = p->full_at[c]; k < p->full_at[c + 1]; k++) {
            Py_ssize_t r = p->full[k];
            if (excluded && excluded[r]) continue;
            Py_ssize_t j = number[r];
            if (j < 0) {
                j = number[r] = n_res++;
                double capacity_r = cut && in_cut[r] ? cut[r] : PyFloat_AsDouble(capacity[r]);
                if (capacity_r == -1.0 && PyErr_Occurred()) goto done;
                p->left[j] = capacity_r;
                p->flows[j] = w;
            } else {
                p->flows[j] = p->flows[j] + w;
            }
            p->users_at[j + 1]++;
            p->route[at++] = j;
        }
        if (at == start) p->routeless = 1;
    }
    p->route_at[n] = at;
    p->n_res = n_res;
    for (Py_ssize_t j = 0; j < n_res; j++) {
        p->users_at[j + 1] += p->users_at[j];
        next_user[j] = p->users_at[j];
    }
    for (Py_ssize_t c = 0; c < n; c++) {
        for (Py_ssize_t k = p->route_at[c]; k < p->route_at[c + 1]; k++) {
            p->users[next_user[p->route[k]]++] = c;
        }
    }
    status = 0;
done:
    for (Py_ssize_t k = 0; k < at_full; k++) number[p->full[k]] = -1;
    return status;
}

/* Read the inputs (every resource index of every route checked to lie in capacity_Bps), then
 * problem_index. Returns 0, or -1 with a Python exception set; p's arrays are taken from
 * ``arena`` (the caller resets it). */
static int problem_read(Problem *p, Arena *arena, PyObject *routes, PyObject *counts,
                        PyObject *caps, PyObject *capacity, const char *excluded) {
    PyObject *routes_fast = NULL, *counts_fast = NULL, *caps_fast = NULL, *cap_fast = NULL;
    PyObject *route_fast = NULL;
    Py_ssize_t *number = NULL;
    int status = -1;
    memset(p, 0, sizeof(*p));
    p->arena = arena;

    routes_fast = PySequence_Fast(routes, "routes must be a sequence");
    counts_fast = PySequence_Fast(counts, "counts must be a sequence");
    caps_fast = PySequence_Fast(caps, "caps_Bps must be a sequence");
    cap_fast = PySequence_Fast(capacity, "capacity_Bps must be a sequence");
    if (!routes_fast || !counts_fast || !caps_fast || !cap_fast) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(routes_fast);
    if (PySequence_Fast_GET_SIZE(counts_fast) < n || PySequence_Fast_GET_SIZE(caps_fast) < n) {
        PyErr_SetString(PyExc_IndexError, "counts and caps_Bps need an entry per route");
        goto done;
    }
    Py_ssize_t n_cap = PySequence_Fast_GET_SIZE(cap_fast);
    p->n = n;
    p->counts = arena_take(arena, sizeof(long) * (size_t)(n + 1));
    p->caps = arena_take(arena, sizeof(double) * (size_t)(n + 1));
    p->full_at = arena_take(arena, sizeof(Py_ssize_t) * (size_t)(n + 1));
    if (!p->counts || !p->caps || !p->full_at) {
        PyErr_NoMemory();
        goto done;
    }

    Py_ssize_t total = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        PyObject *route = PySequence_Fast_GET_ITEM(routes_fast, c);
        total += PySequence_Check(route) ? PySequence_Size(route) : 0;
        if (PyErr_Occurred()) goto done;
    }
    p->full = arena_take(arena, sizeof(Py_ssize_t) * (size_t)(total + 1));
    if (!p->full) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at_full = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        long w = PyLong_AsLong(PySequence_Fast_GET_ITEM(counts_fast, c));
        if (w == -1 && PyErr_Occurred()) goto done;
        double cap = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(caps_fast, c));
        if (cap == -1.0 && PyErr_Occurred()) goto done;
        p->counts[c] = w;
        p->caps[c] = cap;
        p->full_at[c] = at_full;
        route_fast = PySequence_Fast(PySequence_Fast_GET_ITEM(routes_fast, c),
                                     "each route must be a sequence");
        if (!route_fast) goto done;
        Py_ssize_t len = PySequence_Fast_GET_SIZE(route_fast);
        if (at_full + len > total) { /* a route that grew while read: refuse, not overrun */
            PyErr_SetString(PyExc_RuntimeError, "a route changed while it was read");
            goto done;
        }
        for (Py_ssize_t i = 0; i < len; i++) {
            Py_ssize_t r;
            if (resource_index(PySequence_Fast_GET_ITEM(route_fast, i), n_cap, "capacity_Bps",
                               &r) < 0)
                goto done;
            p->full[at_full++] = r;
        }
        Py_CLEAR(route_fast);
    }
    p->full_at[n] = at_full;
    number = arena_take(arena, sizeof(Py_ssize_t) * (size_t)(n_cap + 1));
    if (!number) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < n_cap; r++) number[r] = -1;
    status = problem_index(p, PySequence_Fast_ITEMS(cap_fast), excluded, NULL, NULL, number);
done:
    Py_XDECREF(route_fast);
    Py_XDECREF(routes_fast);
    Py_XDECREF(counts_fast);
    Py_XDECREF(caps_fast);
    Py_XDECREF(cap_fast);
    return status;
}

/* maxmin._one_level_of: the rate every class gets when the first filling level fixes them all;
 * *found is 0 where it does not. */
static double one_level_of(const Problem *p, int *found) {
    double level = INFINITY;
    *found = 0;
    for (Py_ssize_t c = 0; c < p->n; c++) {
        if (p->caps[c] < level) level = p->caps[c];
    }
    if (!(level > 0)) return 0.0;
    for (Py_ssize_t j = 0; j < p->n_res; j++) {
        double share = p->left[j] / (double)p->flows[j];
        if (share < level) level = share;
    }
    if (level == INFINITY) return 0.0;
    double bound = level * (1.0 + REL_TOL);
    for (Py_ssize_t c = 0; c < p->n; c++) {
        if (p->caps[c] > bound) {
            int saturated = 0;
            for (Py_ssize_t k = p->route_at[c]; k < p->route_at[c + 1]; k++) {
                Py_ssize_t j = p->route[k];
                if (p->left[j] <= bound * (double)p->flows[j]) {
                    saturated = 1;
                    break;
                }
            }
            if (!saturated) return 0.0;
        }
    }
    *found = 1;
    return level;
}

/* Shell sort's gaps up to ``n`` into ``gaps`` (Ciura's, then 2.25 times the last), ascending;
 * returns how many. A shell sort makes no allocation and no comparison calls, which qsort
 * would for the few tens of items a solve or a walk sorts. */
static int shell_gaps(Py_ssize_t n, Py_ssize_t gaps[64]) {
    static const Py_ssize_t CIURA[] = {1, 4, 10, 23, 57, 132, 301, 701, 1750};
    int k = 0;
    for (; k < 9 && (k == 0 || CIURA[k] < n); k++) gaps[k] = CIURA[k];
    while (k >= 9 && k < 64) {
        Py_ssize_t next = gaps[k - 1] * 9 / 4;
        if (next >= n) break;
        gaps[k++] = next;
    }
    return k;
}

/* Whether class x comes before class y by (cap, class), as Python sorts the tuples. */
static int cap_then_class_before(const double *caps, Py_ssize_t x, Py_ssize_t y) {
    if (caps[x] < caps[y]) return 1;
    if (caps[y] < caps[x]) return 0;
    return x < y;
}

/* The capped classes by (cap, class) ascending (a shell sort: the keys are distinct). */
static void sort_capped(Py_ssize_t *items, Py_ssize_t n, const double *caps) {
    Py_ssize_t gaps[64];
    for (int k = shell_gaps(n, gaps) - 1; k >= 0; k--) {
        Py_ssize_t g = gaps[k];
        for (Py_ssize_t i = g; i < n; i++) {
            Py_ssize_t c = items[i], j = i;
            for (; j >= g && cap_then_class_before(caps, c, items[j - g]); j -= g)
                items[j] = items[j - g];
            items[j] = c;
        }
    }
}

/* maxmin._fix: fix the classes of to_fix at level (or their cap); returns how many were new */
static Py_ssize_t fix(Problem *p, const Py_ssize_t *to_fix, Py_ssize_t n_fix, double level,
                      char *live, char *fixed, double *rates) {
    Py_ssize_t newly = 0;
    for (Py_ssize_t i = 0; i < n_fix; i++) {
        Py_ssize_t c = to_fix[i];
        if (fixed[c]) continue;
        fixed[c] = 1;
        newly++;
        double cap = p->caps[c];
        double rate = level < cap ? level : cap;
        rates[c] = rate;
        long w = p->counts[c];
        for (Py_ssize_t k = p->route_at[c]; k < p->route_at[c + 1]; k++) {
            Py_ssize_t j = p->route[k];
            if (!live[j]) continue;
            p->left[j] = p->left[j] - rate * (double)w;
            p->flows[j] = p->flows[j] - w;
            if (!p->flows[j]) live[j] = 0;
        }
    }
    return newly;
}

/* maxmin._fill: progressive filling. Returns 0, or -1 with a Python exception set. */
static int fill(Problem *p, double *rates) {
    Py_ssize_t n = p->n, n_res = p->n_res;
    Arena *a = p->arena;
    char *fixed = arena_zeros(a, (size_t)(n + 1));
    char *live = arena_take(a, (size_t)(n_res + 1));
    char *seen = arena_zeros(a, (size_t)(n + 1));
    Py_ssize_t *capped = arena_take(a, sizeof(Py_ssize_t) * (size_t)(n + 1));
    Py_ssize_t *alive = arena_take(a, sizeof(Py_ssize_t) * (size_t)(n_res + 1));
    Py_ssize_t *saturated = arena_take(a, sizeof(Py_ssize_t) * (size_t)(n_res + 1));
    /* every crossing and every capped class at most once each round */
    Py_ssize_t *to_fix = arena_take(a, sizeof(Py_ssize_t) * (size_t)(p->users_at[n_res] + n + 1));
    if (!fixed || !live || !seen || !capped || !alive || !saturated || !to_fix) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t unfixed = 0, n_capped = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        rates[c] = 0.0;
        fixed[c] = p->counts[c] <= 0;
        if (!fixed[c]) unfixed++;
        if (p->caps[c] < INFINITY && !fixed[c]) capped[n_capped++] = c;
    }
    sort_capped(capped, n_capped, p->caps);
    if (n_capped && p->caps[capped[0]] <= 0) {
        PyErr_SetString(PyExc_ValueError, "flow caps must be positive");
        return -1;
    }
    Py_ssize_t n_alive = n_res;
    for (Py_ssize_t j = 0; j < n_res; j++) {
        live[j] = 1;
        alive[j] = j;
    }
    Py_ssize_t next_cap = 0;
    while (unfixed) {
        while (next_cap < n_capped && fixed[capped[next_cap]]) next_cap++;
        Py_ssize_t kept = 0;
        for (Py_ssize_t i = 0; i < n_alive; i++) {
            if (live[alive[i]]) alive[kept++] = alive[i];
        }
        n_alive = kept;
        double level = INFINITY;
        for (Py_ssize_t i = 0; i < n_alive; i++) {
            Py_ssize_t j = alive[i];
            double share = p->left[j] / (double)p->flows[j];
            if (share < level) level = share;
        }
        if (next_cap < n_capped && p->caps[capped[next_cap]] < level) {
            level = p->caps[capped[next_cap]];
        }
        if (level == INFINITY) { /* classes with no resource and no cap: unconstrained */
            for (Py_ssize_t c = 0; c < n; c++) {
                if (!fixed[c]) rates[c] = INFINITY;
            }
            break;
        }
        double bound = level * (1.0 + REL_TOL);
        Py_ssize_t n_saturated = 0;
        for (Py_ssize_t i = 0; i < n_alive; i++) {
            Py_ssize_t j = alive[i];
            if (p->left[j] <= bound * (double)p->flows[j]) saturated[n_saturated++] = j;
        }
        if (n_saturated == n_alive && !p->routeless &&
            (next_cap >= n_capped || p->caps[capped[next_cap]] > bound)) {
            for (Py_ssize_t c = 0; c < n; c++) {
                if (!fixed[c]) rates[c] = level;
            }
            break;
        }
        Py_ssize_t n_fix = 0;
        for (Py_ssize_t i = 0; i < n_saturated; i++) {
            Py_ssize_t j = saturated[i];
            live[j] = 0;
            for (Py_ssize_t k = p->users_at[j]; k < p->users_at[j + 1]; k++) {
                to_fix[n_fix++] = p->users[k];
            }
        }
        while (next_cap < n_capped && p->caps[capped[next_cap]] <= bound) {
            to_fix[n_fix++] = capped[next_cap];
            next_cap++;
        }
        if (n_fix >= unfixed) { /* the last round? every unfixed class among to_fix */
            Py_ssize_t distinct = 0;
            for (Py_ssize_t i = 0; i < n_fix; i++) {
                Py_ssize_t c = to_fix[i];
                if (!fixed[c] && !seen[c]) {
                    seen[c] = 1;
                    distinct++;
                }
            }
            for (Py_ssize_t i = 0; i < n_fix; i++) seen[to_fix[i]] = 0;
            if (distinct == unfixed) {
                for (Py_ssize_t i = 0; i < n_fix; i++) {
                    Py_ssize_t c = to_fix[i];
                    if (!fixed[c]) {
                        double cap = p->caps[c];
                        rates[c] = level < cap ? level : cap;
                    }
                }
                break;
            }
        }
        unfixed -= fix(p, to_fix, n_fix, level, live, fixed, rates);
    }
    return 0;
}

static PyObject *box_double(const void *items, Py_ssize_t i) {
    return PyFloat_FromDouble(((const double *)items)[i]);
}

static PyObject *box_index(const void *items, Py_ssize_t i) {
    return PyLong_FromSsize_t(((const Py_ssize_t *)items)[i]);
}

/* A new list (or, with ``tuple``, tuple) of the ``n`` ``items``, each boxed by ``box``
 * (box_double, box_index), or NULL with an exception set. */
static PyObject *boxed(const void *items, Py_ssize_t n,
                       PyObject *(*box)(const void *, Py_ssize_t), int tuple) {
    PyObject *out = tuple ? PyTuple_New(n) : PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = box(items, i);
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        if (tuple) PyTuple_SET_ITEM(out, i, item);
        else PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* The single class with flows and a route crossing each resource once, in closed form
 * (max_min_fair_rates' first case). Returns 1 and sets *rate where it applies, 0 where it does
 * not, -1 with a Python exception set. */
static int lone_class(const Problem *p, double *rate) {
    if (p->n != 1 || p->counts[0] <= 0) return 0;
    Py_ssize_t start = p->route_at[0], end = p->route_at[1];
    for (Py_ssize_t k = start; k < end; k++) {
        for (Py_ssize_t m = start; m < k; m++) {
            if (p->route[m] == p->route[k]) return 0; /* a resource crossed twice */
        }
    }
    /* min over the route of capacity / count (the first of equal ones), then min with the cap;
     * with the route crossing each resource once, left[j] is the capacity of its resource */
    double share = INFINITY;
    for (Py_ssize_t k = start; k < end; k++) {
        double s = p->left[p->route[k]] / (double)p->counts[0];
        if (k == start || s < share) share = s;
    }
    *rate = p->caps[0] < share ? p->caps[0] : share;
    return 1;
}

/* maxmin.max_min_fair_rates on a read problem: its rates into ``rates`` (p->n of them).
 * Returns 0, or -1 with a Python exception set. */
static int solve(Problem *p, double *rates) {
    if (lone_class(p, rates)) return 0;
    int all_hold = p->n > 0;
    for (Py_ssize_t c = 0; c < p->n; c++) {
        if (p->counts[c] <= 0) all_hold = 0;
    }
    if (all_hold) {
        int found;
        double level = one_level_of(p, &found);
        if (found) {
            for (Py_ssize_t c = 0; c < p->n; c++) rates[c] = level;
            return 0;
        }
    }
    return fill(p, rates);
}

static PyObject *max_min_fair_rates(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "max_min_fair_rates(routes, counts, caps_Bps, capacity_Bps)");
        return NULL;
    }
    Problem p;
    PyObject *out = NULL;
    double *rates = NULL;
    if (problem_read(&p, &module_arena, args[0], args[1], args[2], args[3], NULL) < 0) goto done;
    rates = arena_take(&module_arena, sizeof(double) * (size_t)(p.n + 1));
    if (!rates) {
        PyErr_NoMemory();
        goto done;
    }
    if (solve(&p, rates) == 0) out = boxed(rates, p.n, box_double, 0);
done:
    arena_reset(&module_arena);
    return out;
}

static const double SLACK_REL = 1.0 - 1e-9; /* fluid.py's _SLACK_REL (SLACK_REL: compared alike) */

/* ---- fluid.FluidNetwork._component ------------------------------------------------------- */

static int float_at(PyObject *list, Py_ssize_t r, double *out) {
    *out = PyFloat_AsDouble(PyList_GET_ITEM(list, r));
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* ---- the classes' routes, per resource (ClassTable) ------------------------------------- */

/* A class as the walk reads it: its entry order and route, fixed for its life. */
typedef struct {
    PyObject *cls;   /* a strong reference; NULL while the slot is free */
    PyObject *flows; /* its list of flows (a strong reference): their count is its length */
    Py_ssize_t order;
    double cap;
    double rate, virtual_B, ref_s; /* its clock (_FlowClass's rate_Bps, virtual_B, ref_s) */
    double check_s, next_s;    /* its completion times (_FlowClass.retime) */
    double load;               /* its standing contribution (load_Bps) */
    Py_ssize_t at_check, at_next; /* where it sits in the table's heaps by each */
    Py_ssize_t *route; /* its distinct resources, in route order */
    Py_ssize_t len;
    Py_ssize_t *full; /* its whole route, a repeat kept */
    Py_ssize_t len_full;
    unsigned long long walk; /* the last walk that took it */
} Record;

typedef struct {
    Py_ssize_t *items;
    Py_ssize_t len, size;
} Slots;

/* Room for ``n`` items. Returns 0, or -1 with MemoryError set. */
static int slots_fit(Slots *s, Py_ssize_t n) {
    if (n <= s->size) return 0;
    Py_ssize_t size = 2 * s->size + 8 > n ? 2 * s->size + 8 : n;
    Py_ssize_t *items = realloc(s->items, sizeof(Py_ssize_t) * (size_t)size);
    if (!items) {
        PyErr_NoMemory();
        return -1;
    }
    s->items = items;
    s->size = size;
    return 0;
}

/* Room for one more item. Returns 0, or -1 with MemoryError set. */
static int slots_reserve(Slots *s) { return slots_fit(s, s->len + 1); }

static int slots_push(Slots *s, Py_ssize_t item) {
    if (slots_reserve(s) < 0) return -1;
    s->items[s->len++] = item;
    return 0;
}

/* The network's classes for the walk (fluid.FluidNetwork._c_users): per class its order and
 * route, per resource the classes crossing it (what FluidNetwork._users holds, as slots), kept
 * by add and remove where the network registers and drops a class. */
typedef struct {
    PyObject_HEAD
    Record *records;
    Py_ssize_t n_records, size_records;
    Slots free_slots;
    Slots *users; /* per resource */
    Py_ssize_t n_users;
    unsigned long long walks;
    Slots by_check, by_next; /* the classes' slots, min-heaps by check_s and by next_s */
    PyObject *last_members; /* the list the last walk returned, and its classes' slots */
    Slots last_slots;
    PyObject *last_loose; /* the list of loose resources the last walk returned, and them */
    Slots walk_loose;
    /* per resource, scratch for the optimistic solve, left as found between calls: */
    Py_ssize_t n_scratch;
    unsigned long long *seeded, *visited; /* the last walk that seeded, visited it */
    unsigned long long *tight;            /* the last walk that was told it is tight */
    Slots stack, reached;                 /* the walk's stack and resources (empty) */
    double *since, *carried, *busy; /* per resource: FluidNetwork._flush's ledger */
    Py_ssize_t *number; /* -1 (problem_index's numbering) */
    char *is_loose;     /* 0 */
    double *left, *drawn;
    Py_ssize_t *loose_list;
    Arena arena; /* each solve's arrays */
    /* resource indices and slots read from the arguments (emptied by each use) */
    Slots changed, dirty, tight_res, loose_in, res_in, filled;
    Slots pairs; /* sort_slots' (order, slot) pairs */
    /* per resource: its load as a double while a call runs (load_get, load_put) */
    double *cur;
    unsigned long long *cur_read, *cur_moved; /* the call that read it, that moved it */
    unsigned long long calls;
    Slots moved; /* the resources whose load the call moved, written back at its end */
} ClassTable;

static int table_traverse(ClassTable *t, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < t->n_records; i++) {
        Py_VISIT(t->records[i].cls);
        Py_VISIT(t->records[i].flows);
    }
    Py_VISIT(t->last_members);
    Py_VISIT(t->last_loose);
    return 0;
}

static int table_clear(ClassTable *t) {
    for (Py_ssize_t i = 0; i < t->n_records; i++) {
        Py_CLEAR(t->records[i].cls);
        Py_CLEAR(t->records[i].flows);
    }
    Py_CLEAR(t->last_members);
    Py_CLEAR(t->last_loose);
    return 0;
}

static void table_dealloc(ClassTable *t) {
    PyObject_GC_UnTrack(t);
    table_clear(t);
    for (Py_ssize_t i = 0; i < t->n_records; i++) {
        free(t->records[i].route);
        free(t->records[i].full);
    }
    free(t->records);
    free(t->last_slots.items);
    free(t->walk_loose.items);
    free(t->cur);
    free(t->cur_read);
    free(t->cur_moved);
    Slots *read[] = {&t->changed, &t->dirty,  &t->tight_res, &t->loose_in,
                     &t->res_in,  &t->filled, &t->moved,     &t->pairs};
    for (size_t i = 0; i < sizeof(read) / sizeof(read[0]); i++) free(read[i]->items);
    free(t->tight);
    free(t->by_check.items);
    free(t->by_next.items);
    free(t->seeded);
    free(t->visited);
    free(t->stack.items);
    free(t->reached.items);
    free(t->since);
    free(t->carried);
    free(t->busy);
    free(t->number);
    free(t->is_loose);
    free(t->left);
    free(t->drawn);
    free(t->loose_list);
    arena_free(&t->arena);
    free(t->free_slots.items);
    for (Py_ssize_t r = 0; r < t->n_users; r++) free(t->users[r].items);
    free(t->users);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* ---- the completion index: every class in two min-heaps, by check_s and by next_s ---------- */

enum { BY_CHECK, BY_NEXT };

static double heap_key(const ClassTable *t, int which, Py_ssize_t slot) {
    return which == BY_CHECK ? t->records[slot].check_s : t->records[slot].next_s;
}

static void heap_place(ClassTable *t, int which, Py_ssize_t i, Py_ssize_t slot) {
    Slots *h = which == BY_CHECK ? &t->by_check : &t->by_next;
    h->items[i] = slot;
    if (which == BY_CHECK) t->records[slot].at_check = i;
    else t->records[slot].at_next = i;
}

/* Move the entry at ``i`` up or down to where its key belongs. */
static void heap_fix(ClassTable *t, int which, Py_ssize_t i) {
    Slots *h = which == BY_CHECK ? &t->by_check : &t->by_next;
    Py_ssize_t slot = h->items[i];
    double key = heap_key(t, which, slot);
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!(key < heap_key(t, which, h->items[parent]))) break;
        heap_place(t, which, i, h->items[parent]);
        i = parent;
    }
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= h->len) break;
        if (child + 1 < h->len &&
            heap_key(t, which, h->items[child + 1]) < heap_key(t, which, h->items[child]))
            child++;
        if (!(heap_key(t, which, h->items[child]) < key)) break;
        heap_place(t, which, i, h->items[child]);
        i = child;
    }
    heap_place(t, which, i, slot);
}

static int heap_insert(ClassTable *t, int which, Py_ssize_t slot) {
    Slots *h = which == BY_CHECK ? &t->by_check : &t->by_next;
    if (slots_push(h, slot) < 0) return -1;
    heap_fix(t, which, h->len - 1);
    return 0;
}

static void heap_delete(ClassTable *t, int which, Py_ssize_t slot) {
    Slots *h = which == BY_CHECK ? &t->by_check : &t->by_next;
    Py_ssize_t i = which == BY_CHECK ? t->records[slot].at_check : t->records[slot].at_next;
    Py_ssize_t last = h->items[--h->len];
    if (i < h->len) {
        heap_place(t, which, i, last);
        heap_fix(t, which, i);
    }
}

/* add(cls, order, route, cap_Bps, flows, ref_s) -> slot: register a class (what _new_class adds
 * to _users), with its entry order, route, per-flow cap and list of flows, its clock stopped at
 * 0 bytes from ref_s. */
static PyObject *table_add(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "add(cls, order, route, cap_Bps, flows, ref_s)");
        return NULL;
    }
    double ref_s = PyFloat_AsDouble(args[5]);
    if (ref_s == -1.0 && PyErr_Occurred()) return NULL;
    Py_ssize_t order = PyLong_AsSsize_t(args[1]);
    if (order == -1 && PyErr_Occurred()) return NULL;
    double cap = PyFloat_AsDouble(args[3]);
    if (cap == -1.0 && PyErr_Occurred()) return NULL;
    if (!PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "flows must be a list");
        return NULL;
    }
    PyObject *fast = PySequence_Fast(args[2], "route must be a sequence");
    if (!fast) return NULL;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast), n = 0, top = -1;
    Py_ssize_t *route = malloc(sizeof(Py_ssize_t) * (size_t)(len + 1));
    Py_ssize_t *full = malloc(sizeof(Py_ssize_t) * (size_t)(len + 1));
    if (!route || !full) {
        Py_DECREF(fast);
        free(route);
        free(full);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_ssize_t r = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
        if (r == -1 && PyErr_Occurred()) goto fail;
        if (r < 0) {
            PyErr_Format(PyExc_IndexError, "resource %zd is not a resource index", r);
            goto fail;
        }
        full[i] = r;
        int seen = 0;
        for (Py_ssize_t k = 0; k < n; k++) seen |= route[k] == r;
        if (!seen) route[n++] = r;
        if (r > top) top = r;
    }
    Py_CLEAR(fast);
    if (top >= t->n_users) {
        Py_ssize_t size = 2 * top + 8;
        Slots *users = realloc(t->users, sizeof(Slots) * (size_t)size);
        if (!users) {
            PyErr_NoMemory();
            goto fail;
        }
        memset(users + t->n_users, 0, sizeof(Slots) * (size_t)(size - t->n_users));
        t->users = users;
        t->n_users = size;
    }
    Py_ssize_t slot;
    if (t->free_slots.len) {
        slot = t->free_slots.items[t->free_slots.len - 1];
    } else {
        if (t->n_records == t->size_records) {
            Py_ssize_t size = 2 * t->size_records + 16;
            Record *records = realloc(t->records, sizeof(Record) * (size_t)size);
            if (!records) {
                PyErr_NoMemory();
                goto fail;
            }
            t->records = records;
            t->size_records = size;
        }
        slot = t->n_records;
        memset(&t->records[slot], 0, sizeof(Record));
    }
    /* room in both heaps first, so that nothing below can fail half done */
    if (slots_reserve(&t->by_check) < 0 || slots_reserve(&t->by_next) < 0) goto fail;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (slots_push(&t->users[route[k]], slot) < 0) {
            for (Py_ssize_t j = 0; j < k; j++) t->users[route[j]].len--; /* pushed last */
            goto fail;
        }
    }
    if (slot == t->n_records) t->n_records++;
    else t->free_slots.len--;
    Record *rec = &t->records[slot];
    Py_INCREF(args[0]);
    Py_INCREF(args[4]);
    rec->cls = args[0];
    rec->flows = args[4];
    rec->order = order;
    rec->cap = cap;
    rec->route = route;
    rec->len = n;
    rec->full = full;
    rec->len_full = len;
    rec->walk = 0;
    rec->check_s = rec->next_s = INFINITY; /* as a new _FlowClass's */
    rec->load = 0.0;
    rec->rate = rec->virtual_B = 0.0;
    rec->ref_s = ref_s;
    heap_insert(t, BY_CHECK, slot);       /* room made above: cannot fail */
    heap_insert(t, BY_NEXT, slot);
    return PyLong_FromSsize_t(slot);
fail:
    Py_XDECREF(fast);
    free(route);
    free(full);
    return NULL;
}

/* The record in ``slot`` (a Python int), or NULL with an exception set. */
static Record *table_record(ClassTable *t, PyObject *slot_obj) {
    Py_ssize_t slot = PyLong_AsSsize_t(slot_obj);
    if (slot == -1 && PyErr_Occurred()) return NULL;
    if (slot < 0 || slot >= t->n_records || !t->records[slot].cls) {
        PyErr_Format(PyExc_KeyError, "no class in slot %zd", slot);
        return NULL;
    }
    return &t->records[slot];
}

static PyObject *slot_name = NULL; /* "slot", interned at import */

/* The record of ``cls`` (a class the table holds, found by its ``slot``), or NULL with an
 * exception set (no class in that slot, or another class there). */
static Record *record_of(ClassTable *t, PyObject *cls) {
    PyObject *slot = PyObject_GetAttr(cls, slot_name);
    if (!slot) return NULL;
    Record *rec = table_record(t, slot);
    Py_DECREF(slot);
    if (rec && rec->cls != cls) {
        PyErr_SetString(PyExc_KeyError, "a class is not the one in its slot");
        return NULL;
    }
    return rec;
}

/* remove(slot) -> float: drop the class in ``slot`` (what _wake discards from _users); returns
 * its standing contribution (which the next settle takes off the loads). */
static PyObject *table_remove(ClassTable *t, PyObject *slot_obj) {
    Record *rec = table_record(t, slot_obj);
    if (!rec) return NULL;
    Py_ssize_t slot = rec - t->records;
    if (slots_push(&t->free_slots, slot) < 0) return NULL;
    heap_delete(t, BY_CHECK, slot);
    heap_delete(t, BY_NEXT, slot);
    for (Py_ssize_t k = 0; k < rec->len; k++) {
        Slots *users = &t->users[rec->route[k]];
        for (Py_ssize_t i = 0; i < users->len; i++) {
            if (users->items[i] == slot) {
                users->items[i] = users->items[--users->len]; /* their order is not kept */
                break;
            }
        }
    }
    free(rec->route);
    free(rec->full);
    rec->route = rec->full = NULL;
    rec->len = rec->len_full = 0;
    Py_CLEAR(rec->cls);
    Py_CLEAR(rec->flows);
    return PyFloat_FromDouble(rec->load);
}

/* sharers(r) -> int: how many classes cross resource r (len(_users.get(r, ()))). */
static PyObject *table_sharers(ClassTable *t, PyObject *r_obj) {
    Py_ssize_t r = PyLong_AsSsize_t(r_obj);
    if (r == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromSsize_t(r >= 0 && r < t->n_users ? t->users[r].len : 0);
}

/* The walk's classes (slots) by entry order (orders are distinct), sorted as (order, slot)
 * pairs in ``pairs`` (a buffer) so that no comparison reads a record. Returns 0, or -1 with
 * MemoryError set. */
static int sort_slots(Py_ssize_t *items, Py_ssize_t n, const Record *records, Slots *pairs) {
    if (slots_fit(pairs, 2 * n) < 0) return -1;
    Py_ssize_t *p = pairs->items, gaps[64];
    for (Py_ssize_t i = 0; i < n; i++) {
        p[2 * i] = records[items[i]].order;
        p[2 * i + 1] = items[i];
    }
    for (int k = shell_gaps(n, gaps) - 1; k >= 0; k--) {
        Py_ssize_t g = gaps[k];
        for (Py_ssize_t i = g; i < n; i++) {
            Py_ssize_t order = p[2 * i], slot = p[2 * i + 1], j = i;
            for (; j >= g && p[2 * (j - g)] > order; j -= g) {
                p[2 * j] = p[2 * (j - g)];
                p[2 * j + 1] = p[2 * (j - g) + 1];
            }
            p[2 * j] = order;
            p[2 * j + 1] = slot;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) items[i] = p[2 * i + 1];
    return 0;
}

/* The walk's resources ascending (indices are distinct). */
static void sort_indices(Py_ssize_t *items, Py_ssize_t n) {
    Py_ssize_t gaps[64];
    for (int k = shell_gaps(n, gaps) - 1; k >= 0; k--) {
        Py_ssize_t g = gaps[k];
        for (Py_ssize_t i = g; i < n; i++) {
            Py_ssize_t r = items[i], j = i;
            for (; j >= g && items[j - g] > r; j -= g) items[j] = items[j - g];
            items[j] = r;
        }
    }
}

/* table_scratch's step: t->field grown to ``size`` entries, or a return with MemoryError set
 * (those grown stay grown: the next call grows the rest). */
#define GROW(field)                                                                           \
    do {                                                                                      \
        void *grown = realloc(t->field, sizeof(*t->field) * (size_t)size);                    \
        if (!grown) {                                                                         \
            PyErr_NoMemory();                                                                 \
            return -1;                                                                        \
        }                                                                                     \
        t->field = grown;                                                                     \
    } while (0)

/* The table's per-resource scratch grown to ``n_res`` resources. Returns 0, or -1 with
 * MemoryError set. */
static int table_scratch(ClassTable *t, Py_ssize_t n_res) {
    if (n_res <= t->n_scratch) return 0;
    Py_ssize_t size = 2 * n_res + 8;
    GROW(seeded);
    GROW(visited);
    GROW(tight);
    GROW(cur);
    GROW(cur_read);
    GROW(cur_moved);
    GROW(since);
    GROW(carried);
    GROW(busy);
    GROW(number);
    GROW(is_loose);
    GROW(left);
    GROW(drawn);
    GROW(loose_list);
    for (Py_ssize_t r = t->n_scratch; r < size; r++) {
        t->seeded[r] = t->visited[r] = t->tight[r] = t->cur_read[r] = t->cur_moved[r] = 0;
        t->since[r] = t->carried[r] = t->busy[r] = 0.0;
        t->number[r] = -1;
        t->is_loose[r] = 0;
    }
    t->n_scratch = size;
    return 0;
}
#undef GROW

/* ---- the loads a call reads and moves, as doubles ------------------------------------------
 * A call that reads or moves the network's loads (load_Bps, a list of floats) takes each as a
 * double at its first use and writes back those it moved at its end (loads_begin, loads_end):
 * the same sums, in the same order, as on the list, without a float object per step. */

static void loads_begin(ClassTable *t) {
    t->calls++;
    t->moved.len = 0;
}

/* Resource ``r``'s load (``r`` in range) into *out. Returns 0, or -1 with an exception set. */
static int load_get(ClassTable *t, PyObject *load, Py_ssize_t r, double *out) {
    if (t->cur_read[r] != t->calls) {
        if (float_at(load, r, &t->cur[r]) < 0) return -1;
        t->cur_read[r] = t->calls;
    }
    *out = t->cur[r];
    return 0;
}

/* Set resource ``r``'s load (``r`` in range) to ``value``. Returns 0, or -1 with MemoryError. */
static int load_put(ClassTable *t, Py_ssize_t r, double value) {
    t->cur[r] = value;
    t->cur_read[r] = t->calls;
    if (t->cur_moved[r] == t->calls) return 0;
    t->cur_moved[r] = t->calls;
    return slots_push(&t->moved, r);
}

/* Write the loads the call moved back into ``load``. Returns 0, or -1 with an exception set
 * (where one was set already, it stays: the loads are written back all the same). */
static int loads_end(ClassTable *t, PyObject *load) {
    int status = PyErr_Occurred() ? -1 : 0;
    for (Py_ssize_t k = 0; k < t->moved.len; k++) {
        Py_ssize_t r = t->moved.items[k];
        PyObject *value = PyFloat_FromDouble(t->cur[r]);
        if (!value) return -1;
        PyList_SetItem(load, r, value); /* steals it, drops the old one */
    }
    t->moved.len = 0;
    t->calls++; /* nothing read stays current past the call */
    return status;
}

/* Take the class in ``slot`` into the walk: unless taken, mark it, add it to ``members`` and
 * push its route (``seed``: as seeds, each resource once). Returns 0, or -1 with an exception. */
static int take(ClassTable *t, Py_ssize_t slot, Slots *members, Py_ssize_t n_res, int seed) {
    Record *rec = &t->records[slot];
    if (rec->walk == t->walks) return 0;
    rec->walk = t->walks;
    if (slots_push(members, slot) < 0) return -1;
    for (Py_ssize_t k = 0; k < rec->len; k++) {
        Py_ssize_t r = rec->route[k];
        if (r >= n_res) {
            PyErr_Format(PyExc_IndexError, "resource %zd is not in load_Bps (%zd resources)", r,
                         n_res);
            return -1;
        }
        if (seed) {
            if (t->seeded[r] == t->walks) continue;
            t->seeded[r] = t->walks;
        }
        if (slots_push(&t->stack, r) < 0) return -1;
    }
    return 0;
}


/* The resource indices of ``iterable`` (each checked to lie among ``n_res``, named ``name`` in
 * the error) into ``out``, emptied first. Returns 0, or -1 with an exception set. */
static int indices_of(PyObject *iterable, Py_ssize_t n_res, const char *name, Slots *out) {
    out->len = 0;
    PyObject *iter = PyObject_GetIter(iterable), *item;
    if (!iter) return -1;
    while ((item = PyIter_Next(iter))) {
        Py_ssize_t r;
        int bad = resource_index(item, n_res, name, &r);
        Py_DECREF(item);
        if (bad || slots_push(out, r) < 0) {
            Py_DECREF(iter);
            return -1;
        }
    }
    Py_DECREF(iter);
    return PyErr_Occurred() ? -1 : 0;
}

/* The classes of ``dirty_keys`` still in ``classes`` (a dict by key): their slots into
 * t->changed and, where ``touched`` is a list, the classes appended to it (each once: the keys
 * are a set). Returns 0, or -1 with an exception set. */
static int changed_classes(ClassTable *t, PyObject *classes, PyObject *dirty_keys,
                           PyObject *touched) {
    t->changed.len = 0;
    PyObject *iter = PyObject_GetIter(dirty_keys), *item;
    if (!iter) return -1;
    while ((item = PyIter_Next(iter))) {
        PyObject *changed = PyDict_GetItemWithError(classes, item); /* borrowed */
        Py_DECREF(item);
        if (!changed) {
            if (PyErr_Occurred()) break;
            continue;
        }
        Record *rec = record_of(t, changed);
        if (!rec || slots_push(&t->changed, rec - t->records) < 0 ||
            (touched && PyList_Append(touched, changed) < 0))
            break;
    }
    Py_DECREF(iter);
    return PyErr_Occurred() ? -1 : 0;
}

/* The walk of table_component from the classes in t->changed and the resources in t->dirty,
 * the resources of ``tight`` connecting however loose: the members by entry order into
 * t->last_slots, the resources into t->reached (ascending with ``sorted_resources``), the
 * loose ones (in the order the walk met them) into t->walk_loose. Which classes and resources
 * it takes does not depend on the order it goes in, so it marks what it took with its number
 * (in the classes' records and the table's per-resource stamps, so nothing is cleared between
 * walks) and sorts at the end.
 * Returns 0, or -1 with an exception set. */
static int walk(ClassTable *t, PyObject *load, PyObject *room_Bps, PyObject *uncapped,
                PyObject *demand, int optimistic, const Slots *tight, int sorted_resources) {
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    Slots *members = &t->last_slots, *stack = &t->stack, *visited = &t->reached;
    Slots *walk_loose = &t->walk_loose;
    members->len = stack->len = visited->len = walk_loose->len = 0;
    t->walks++;
    for (Py_ssize_t k = 0; k < tight->len; k++) t->tight[tight->items[k]] = t->walks;
    for (Py_ssize_t k = 0; k < t->changed.len; k++) {
        if (take(t, t->changed.items[k], members, n_res, 1) < 0) return -1;
    }
    for (Py_ssize_t k = 0; k < t->dirty.len; k++) {
        Py_ssize_t r = t->dirty.items[k];
        if (t->seeded[r] != t->walks) {
            t->seeded[r] = t->walks;
            if (slots_push(stack, r) < 0) return -1;
        }
    }
    while (stack->len) {
        Py_ssize_t r = stack->items[--stack->len];
        if (t->visited[r] == t->walks) continue;
        t->visited[r] = t->walks;
        if (slots_push(visited, r) < 0) return -1;
        double room, load_r, demand_r;
        if (float_at(room_Bps, r, &room) < 0 || load_get(t, load, r, &load_r) < 0) return -1;
        int below = load_r < room;
        int none_uncapped = PyObject_Not(PyList_GET_ITEM(uncapped, r));
        if (none_uncapped < 0) return -1;
        if (none_uncapped) {
            if (float_at(demand, r, &demand_r) < 0) return -1;
            if (demand_r <= room && (below || t->seeded[r] != t->walks))
                continue; /* cannot saturate: its capacity is never in question */
        }
        Slots *sharers = r < t->n_users ? &t->users[r] : NULL;
        if (!sharers || !sharers->len) continue; /* no class crosses it */
        if (optimistic && below && sharers->len > 1 && t->tight[r] != t->walks) {
            if (slots_push(walk_loose, r) < 0) return -1; /* loose: visited once */
            continue;
        }
        for (Py_ssize_t i = 0; i < sharers->len; i++) {
            if (take(t, sharers->items[i], members, n_res, 0) < 0) return -1;
        }
    }
    if (sort_slots(members->items, members->len, t->records, &t->pairs) < 0) return -1;
    if (sorted_resources) sort_indices(visited->items, visited->len);
    return 0;
}

/* Whether the per-resource lists ``lists`` (``n`` of them) are lists of one length, into
 * *n_res. Returns 0, or -1 with an exception set. */
static int per_resource(PyObject *const *lists, int n, Py_ssize_t *n_res) {
    for (int i = 0; i < n; i++) {
        if (!PyList_Check(lists[i])) {
            PyErr_SetString(PyExc_TypeError, "each per-resource argument must be a list");
            return -1;
        }
        if (PyList_GET_SIZE(lists[i]) != PyList_GET_SIZE(lists[0])) {
            PyErr_SetString(PyExc_ValueError, "the per-resource lists differ in length");
            return -1;
        }
    }
    *n_res = PyList_GET_SIZE(lists[0]);
    return 0;
}

/* component(classes, dirty_keys, dirty_res, load_Bps, room_Bps, uncapped, demand, optimistic,
 * tight): fluid.FluidNetwork._component (see its docstring) over this table and the network's
 * own containers (walk): the same classes in the same (entry) order, the same resources
 * ascending, the same changed classes (a list) and the same loose resources (a list, in the
 * order the walk met them; solve_without reads them from the table when given this list). */
static PyObject *table_component(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "component(classes, dirty_keys, dirty_res, load_Bps, room_Bps, uncapped, "
                        "demand, optimistic, tight)");
        return NULL;
    }
    PyObject *classes = args[0], *dirty_keys = args[1], *dirty_res = args[2];
    PyObject *load = args[3], *room_Bps = args[4], *uncapped = args[5], *demand = args[6];
    PyObject *tight = args[8];
    int optimistic = PyObject_IsTrue(args[7]);
    if (optimistic < 0) return NULL;
    if (!PyDict_Check(classes) || !PyAnySet_Check(tight)) {
        PyErr_SetString(PyExc_TypeError,
                        "component needs a dict of classes and a set of tight resources");
        return NULL;
    }
    Py_ssize_t n_res;
    if (per_resource(args + 3, 4, &n_res) < 0) return NULL;
    PyObject *touched = NULL, *loose = NULL, *member_list = NULL, *resource_list = NULL;
    PyObject *out = NULL;
    Py_CLEAR(t->last_members);
    Py_CLEAR(t->last_loose);
    if (table_scratch(t, n_res) < 0 || indices_of(tight, n_res, "load_Bps", &t->tight_res) < 0)
        return NULL;
    if (!(touched = PyList_New(0))) return NULL;
    if (changed_classes(t, classes, dirty_keys, touched) < 0 ||
        indices_of(dirty_res, n_res, "load_Bps", &t->dirty) < 0)
        goto done;
    loads_begin(t);
    int walked = walk(t, load, room_Bps, uncapped, demand, optimistic, &t->tight_res, 1);
    if (loads_end(t, load) < 0 || walked < 0) goto done;
    Slots *members = &t->last_slots;
    if (!(member_list = PyList_New(members->len))) goto done;
    for (Py_ssize_t i = 0; i < members->len; i++) {
        PyObject *cls = t->records[members->items[i]].cls;
        Py_INCREF(cls);
        PyList_SET_ITEM(member_list, i, cls);
    }
    if (!(resource_list = boxed(t->reached.items, t->reached.len, box_index, 0)) ||
        !(loose = boxed(t->walk_loose.items, t->walk_loose.len, box_index, 0)))
        goto done;
    out = PyTuple_Pack(4, member_list, resource_list, touched, loose);
    if (out) { /* for the solve and re-time that take these lists next: read from the table */
        Py_INCREF(member_list);
        t->last_members = member_list;
        Py_INCREF(loose);
        t->last_loose = loose;
    }
done:
    Py_XDECREF(member_list);
    Py_XDECREF(resource_list);
    Py_XDECREF(touched);
    Py_XDECREF(loose);
    return out;
}

/* The slot of each class of ``members`` (a list) into ``slots``: the last walk's, where these
 * are the classes it returned, in its order; each class's ``slot`` otherwise. Returns 0, or -1
 * with an exception set (a class the table does not hold). */
static int member_slots(ClassTable *t, PyObject *members, Py_ssize_t *slots) {
    Py_ssize_t n = PyList_GET_SIZE(members);
    if (members == t->last_members && n == t->last_slots.len) {
        Py_ssize_t i = 0;
        for (; i < n; i++) {
            Py_ssize_t slot = t->last_slots.items[i];
            if (t->records[slot].cls != PyList_GET_ITEM(members, i)) break;
            slots[i] = slot;
        }
        if (i == n) return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Record *rec = record_of(t, PyList_GET_ITEM(members, i));
        if (!rec) return -1;
        slots[i] = rec - t->records;
    }
    return 0;
}

/* table_solve_without's solve over C arrays: the members in ``slots``, the ``loose``
 * resources (``n_given`` of them, repeats allowed), the gone classes' routes and standing
 * contributions (sequences of one length), into ``rates``; the loose resources the rates would
 * fill into t->filled. Returns 0, or -1 with an exception set. */
static int solve_slots(ClassTable *t, const Py_ssize_t *slots, Py_ssize_t n, PyObject *capacity,
                       PyObject *load, const Py_ssize_t *loose, Py_ssize_t n_given,
                       PyObject *gone_fast, PyObject *gone_own_fast, int with_loose,
                       double *rates) {
    Py_ssize_t n_cap = PyList_GET_SIZE(capacity), n_loose = 0;
    Arena *arena = &t->arena;
    char *is_loose = t->is_loose;
    double *left = t->left, *drawn = t->drawn;
    Py_ssize_t *loose_list = t->loose_list;
    int status = -1;
    Problem p;
    memset(&p, 0, sizeof(p));
    p.arena = arena;
    t->filled.len = 0;
    double *own = arena_take(arena, sizeof(double) * (size_t)(n + 1));
    if (!own) {
        PyErr_NoMemory();
        goto done;
    }
    /* outside: each loose resource's load, less the standing contributions taken off below */
    for (Py_ssize_t k = 0; k < n_given; k++) {
        Py_ssize_t r = loose[k];
        if (r < 0 || r >= n_cap) {
            PyErr_Format(PyExc_IndexError, "resource %zd is not in capacity_Bps", r);
            goto done;
        }
        if (is_loose[r]) continue;
        is_loose[r] = 1;
        loose_list[n_loose++] = r;
        if (load_get(t, load, r, &left[r]) < 0) goto done;
    }
    /* the problem from the records: flows, caps, whole routes and standing contributions,
     * class after class */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) total += t->records[slots[i]].len_full;
    p.n = n;
    p.counts = arena_take(arena, sizeof(long) * (size_t)(n + 1));
    p.caps = arena_take(arena, sizeof(double) * (size_t)(n + 1));
    p.full_at = arena_take(arena, sizeof(Py_ssize_t) * (size_t)(n + 1));
    p.full = arena_take(arena, sizeof(Py_ssize_t) * (size_t)(total + 1));
    if (!p.counts || !p.caps || !p.full_at || !p.full) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at_full = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Record *rec = &t->records[slots[i]];
        p.counts[i] = (long)PyList_GET_SIZE(rec->flows);
        p.caps[i] = rec->cap;
        p.full_at[i] = at_full;
        for (Py_ssize_t k = 0; k < rec->len_full; k++) {
            Py_ssize_t r = rec->full[k];
            if (r >= n_cap) {
                PyErr_Format(PyExc_IndexError, "resource %zd is not in capacity_Bps", r);
                goto done;
            }
            p.full[at_full++] = r;
        }
        own[i] = rec->load;
    }
    p.full_at[n] = at_full;
    for (Py_ssize_t i = 0; n_loose && i < n; i++) { /* the component's classes, then gone ones */
        for (Py_ssize_t k = p.full_at[i]; k < p.full_at[i + 1]; k++) {
            Py_ssize_t r = p.full[k];
            if (is_loose[r]) left[r] = left[r] - own[i];
        }
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(gone_fast); i++) {
        double amount = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(gone_own_fast, i));
        if (amount == -1.0 && PyErr_Occurred()) goto done;
        if (indices_of(PySequence_Fast_GET_ITEM(gone_fast, i), n_cap, "capacity_Bps",
                       &t->res_in) < 0)
            goto done;
        for (Py_ssize_t k = 0; k < t->res_in.len; k++) { /* a repeat taken off again */
            Py_ssize_t r = t->res_in.items[k];
            if (is_loose[r]) left[r] = left[r] - amount;
        }
    }
    if (with_loose) { /* each loose resource at what is left of it: max(capacity - drawn, 0.0) */
        for (Py_ssize_t k = 0; k < n_loose; k++) {
            Py_ssize_t r = loose_list[k];
            double capacity_r;
            if (float_at(capacity, r, &capacity_r) < 0) goto done;
            double cut = capacity_r - left[r];
            drawn[r] = 0.0 > cut ? 0.0 : cut; /* scratch until the fill check below */
        }
    }
    if (problem_index(&p, PySequence_Fast_ITEMS(capacity), with_loose ? NULL : is_loose,
                      with_loose ? drawn : NULL, is_loose, t->number) < 0)
        goto done;
    if (solve(&p, rates) < 0) goto done;
    /* _fills: what the classes draw of each loose resource at their new rates (class order,
     * route order), against what the classes outside leave of it */
    for (Py_ssize_t k = 0; k < n_loose; k++) drawn[loose_list[k]] = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double d = rates[i] * (double)p.counts[i];
        for (Py_ssize_t k = p.full_at[i]; k < p.full_at[i + 1]; k++) {
            Py_ssize_t r = p.full[k];
            if (is_loose[r]) drawn[r] = drawn[r] + d;
        }
    }
    for (Py_ssize_t k = 0; k < n_loose; k++) {
        Py_ssize_t r = loose_list[k];
        double capacity_r;
        if (float_at(capacity, r, &capacity_r) < 0) goto done;
        double d = drawn[r];
        if (d > 0 && d >= (capacity_r - left[r]) * SLACK_REL && slots_push(&t->filled, r) < 0)
            goto done;
    }
    status = 0;
done:
    for (Py_ssize_t k = 0; k < n_loose; k++) is_loose[loose_list[k]] = 0;
    return status;
}

/* The gone classes' routes and standing contributions as fast sequences of one length, into
 * *routes and *own (new references). Returns 0, or -1 with an exception set. */
static int gone_lists(PyObject *gone_routes, PyObject *gone_own, PyObject **routes,
                      PyObject **own) {
    *routes = PySequence_Fast(gone_routes, "gone_routes must be a sequence");
    *own = PySequence_Fast(gone_own, "gone_loads_Bps must be a sequence");
    if (*routes && *own && PySequence_Fast_GET_SIZE(*own) >= PySequence_Fast_GET_SIZE(*routes))
        return 0;
    if (*routes && *own)
        PyErr_SetString(PyExc_IndexError, "gone_loads_Bps is shorter than gone_routes");
    Py_CLEAR(*routes);
    Py_CLEAR(*own);
    return -1;
}

/* solve_without(members, capacity_Bps, load_Bps, loose, gone_routes, gone_loads_Bps,
 * with_loose): fluid.FluidNetwork._solve_without (its _cut and its _fills in one) over this
 * table's routes, caps, flow counts and standing contributions: see the method's docstring.
 * With ``with_loose``, the solve of _solve_leaving's general path instead: the loose resources
 * stay in the routes, each at what the classes outside leave of it (its capacity less their
 * draw, at least 0), and the same fill check. The last walk's members and loose resources are
 * read from the table where they are the lists it returned. */
static PyObject *table_solve_without(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "solve_without(members, capacity_Bps, load_Bps, loose, gone_routes, "
                        "gone_loads_Bps, with_loose)");
        return NULL;
    }
    int with_loose = PyObject_IsTrue(args[6]);
    if (with_loose < 0) return NULL;
    PyObject *members = args[0], *capacity = args[1], *loose_set = args[3];
    Py_ssize_t n_cap;
    if (!PyList_Check(members)) {
        PyErr_SetString(PyExc_TypeError, "solve_without needs a list of members");
        return NULL;
    }
    if (per_resource(args + 1, 2, &n_cap) < 0 || table_scratch(t, n_cap) < 0) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(members);
    PyObject *out = NULL, *filled = NULL, *rates_out = NULL, *gone_fast = NULL, *own = NULL;
    Py_ssize_t *slots = arena_take(&t->arena, sizeof(Py_ssize_t) * (size_t)(n + 1));
    double *rates = arena_take(&t->arena, sizeof(double) * (size_t)(n + 1));
    if (!slots || !rates) {
        PyErr_NoMemory();
        goto done;
    }
    const Slots *loose = &t->walk_loose;
    if (loose_set != t->last_loose) {
        if (indices_of(loose_set, n_cap, "capacity_Bps", &t->loose_in) < 0) goto done;
        loose = &t->loose_in;
    }
    if (member_slots(t, members, slots) < 0 || gone_lists(args[4], args[5], &gone_fast, &own) < 0)
        goto done;
    loads_begin(t);
    int solved = solve_slots(t, slots, n, capacity, args[2], loose->items, loose->len, gone_fast,
                             own, with_loose, rates);
    if (loads_end(t, args[2]) < 0 || solved < 0 ||
        !(filled = boxed(t->filled.items, t->filled.len, box_index, 0)))
        goto done;
    if (PyList_GET_SIZE(filled)) {
        rates_out = Py_None;
        Py_INCREF(rates_out);
    } else if (!(rates_out = boxed(rates, n, box_double, 0))) {
        goto done;
    }
    out = PyTuple_Pack(2, rates_out, filled);
done:
    Py_XDECREF(rates_out);
    Py_XDECREF(filled);
    Py_XDECREF(gone_fast);
    Py_XDECREF(own);
    arena_reset(&t->arena);
    return out;
}

/* _retime_end's peaks over the ``n`` resources ``res``: a resource no registered class crosses
 * has its load zeroed (rounding residue included); any other's peak rises to its load.
 * Returns 0, or -1 with an exception set. */
static int peaks_at(ClassTable *t, const Py_ssize_t *res, Py_ssize_t n, PyObject *load,
                    PyObject *peak) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = res[i];
        if (r >= t->n_users || !t->users[r].len) {
            if (load_put(t, r, 0.0) < 0) return -1; /* no flows left: no rounding residue */
            continue;
        }
        double now_Bps, peak_Bps;
        if (load_get(t, load, r, &now_Bps) < 0 || float_at(peak, r, &peak_Bps) < 0) return -1;
        if (now_Bps > peak_Bps) {
            PyObject *now = PyFloat_FromDouble(now_Bps);
            if (!now) return -1;
            PyList_SetItem(peak, r, now);
        }
    }
    return 0;
}

/* peaks(resources, load_Bps, peak_Bps): fluid.FluidNetwork._retime_end's peaks (peaks_at),
 * reading this table's classes per resource where the Python reads _users. */
static PyObject *table_peaks(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "peaks(resources, load_Bps, peak_Bps)");
        return NULL;
    }
    Py_ssize_t n_res;
    if (per_resource(args + 1, 2, &n_res) < 0 || table_scratch(t, n_res) < 0 ||
        indices_of(args[0], n_res, "load_Bps", &t->res_in) < 0)
        return NULL;
    loads_begin(t);
    int peaked = peaks_at(t, t->res_in.items, t->res_in.len, args[1], args[2]);
    if (loads_end(t, args[1]) < 0 || peaked < 0) return NULL;
    Py_RETURN_NONE;
}

/* The record of the slot in args[0] and the ``n`` floats after it into ``values``, for a
 * method called as ``usage``. Returns the record, or NULL with an exception set. */
static Record *slot_and_floats(ClassTable *t, PyObject *const *args, Py_ssize_t nargs,
                               Py_ssize_t n, const char *usage, double *values) {
    if (nargs != n + 1) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    Record *rec = table_record(t, args[0]);
    for (Py_ssize_t i = 0; rec && i < n; i++) {
        values[i] = PyFloat_AsDouble(args[i + 1]);
        if (values[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    return rec;
}

/* retimed(slot, check_s, next_s, load_Bps): the class in ``slot`` was re-timed
 * (_FlowClass.retime), its standing contribution now load_Bps. */
static PyObject *table_retimed(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    double v[3];
    Record *rec = slot_and_floats(t, args, nargs, 3, "retimed(slot, check_s, next_s, load_Bps)", v);
    if (!rec) return NULL;
    rec->check_s = v[0];
    rec->next_s = v[1];
    rec->load = v[2];
    heap_fix(t, BY_CHECK, rec->at_check);
    heap_fix(t, BY_NEXT, rec->at_next);
    Py_RETURN_NONE;
}

/* ---- the classes' clocks: _FlowClass.virtual_at, set_rate and retime on the records --------- */

static const double WAKE_WINDOW_REL = 1e-9; /* fluid.py's _WAKE_WINDOW_REL (compared alike) */

static double record_virtual_at(const Record *rec, double now) {
    if (now == rec->ref_s) return rec->virtual_B;
    return rec->virtual_B + rec->rate * (now - rec->ref_s);
}

static void record_set_rate(Record *rec, double rate, double now) {
    rec->virtual_B = record_virtual_at(rec, now);
    rec->ref_s = now;
    rec->rate = rate;
}

/* _FlowClass.retime (its next_s and check_s from its clock and first flow), then its places in
 * the completion index. Returns 0, or -1 with an exception set (flows not as _enter makes
 * them: a heap of (finish virtual bytes, sequence, flow) tuples). */
static int record_retime(ClassTable *t, Record *rec, double now) {
    double rate = rec->rate;
    if (rate == INFINITY) {
        rec->next_s = rec->check_s = now;
    } else if (rate > 0) {
        PyObject *head = PyList_GET_SIZE(rec->flows) ? PyList_GET_ITEM(rec->flows, 0) : NULL;
        if (!head || !PyTuple_Check(head) || !PyTuple_GET_SIZE(head)) {
            PyErr_SetString(PyExc_IndexError, "a class with a rate has no first flow");
            return -1;
        }
        double first = PyFloat_AsDouble(PyTuple_GET_ITEM(head, 0));
        if (first == -1.0 && PyErr_Occurred()) return -1;
        double rest = first - record_virtual_at(rec, now);
        if (0.0 > rest) rest = 0.0; /* Python's max(rest, 0.0) */
        rec->next_s = now + rest / rate;
        rec->check_s = rec->next_s - WAKE_WINDOW_REL * (first / rate + rec->next_s);
    } else {
        rec->next_s = INFINITY;
        rec->check_s = -INFINITY;
    }
    heap_fix(t, BY_CHECK, rec->at_check);
    heap_fix(t, BY_NEXT, rec->at_next);
    return 0;
}

/* rerate(slot, rate_Bps, load_Bps, now): the class in ``slot`` runs at rate_Bps from now
 * (_FlowClass.set_rate, where the rate changes), its standing contribution now load_Bps, and
 * is re-timed (_FlowClass.retime): what _settle_alone and _materialise do to one class. */
static PyObject *table_rerate(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    double v[3]; /* rate, load, now */
    Record *rec = slot_and_floats(t, args, nargs, 3, "rerate(slot, rate_Bps, load_Bps, now)", v);
    if (!rec) return NULL;
    if (v[0] != rec->rate) record_set_rate(rec, v[0], v[2]);
    rec->load = v[1];
    if (record_retime(t, rec, v[2]) < 0) return NULL;
    Py_RETURN_NONE;
}

/* _retime's loop over the ``n`` members in ``slots`` at ``rates``: each one's standing
 * contribution moved on ``load`` (along its whole route), and the classes whose rate changed,
 * or whose record carries ``touched`` (their flows changed), re-timed. Returns 0, or -1 with an
 * exception set. */
static int retime_slots(ClassTable *t, const Py_ssize_t *slots, Py_ssize_t n,
                        const double *rates, unsigned long long touched, double now,
                        PyObject *load) {
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    for (Py_ssize_t i = 0; i < n; i++) {
        Record *rec = &t->records[slots[i]];
        double rate = rates[i];
        double contribution = rate * (double)PyList_GET_SIZE(rec->flows);
        if (contribution != rec->load) {
            double delta = contribution - rec->load;
            for (Py_ssize_t k = 0; k < rec->len_full; k++) {
                Py_ssize_t r = rec->full[k];
                double load_r;
                if (r >= n_res) {
                    PyErr_Format(PyExc_IndexError, "resource %zd is not in load_Bps", r);
                    return -1;
                }
                if (load_get(t, load, r, &load_r) < 0 || load_put(t, r, load_r + delta) < 0)
                    return -1;
            }
            rec->load = contribution;
        }
        if (rate == rec->rate && rec->walk != touched) continue; /* its completion time stands */
        if (rate != rec->rate) record_set_rate(rec, rate, now);
        if (record_retime(t, rec, now) < 0) return -1;
    }
    return 0;
}

/* retime(members, rates, touched, now, load_Bps): fluid.FluidNetwork._retime's loop
 * (retime_slots) over a settle's members (the list the last walk returned, or any classes the
 * table holds) at their new rates, the classes of ``touched`` (every one a member) marked. */
static PyObject *table_retime(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "retime(members, rates, touched, now, load_Bps)");
        return NULL;
    }
    PyObject *members = args[0], *rate_list = args[1], *touched = args[2], *load = args[4];
    if (!PyList_Check(members) || !PyList_Check(rate_list) || !PyList_Check(touched) ||
        !PyList_Check(load)) {
        PyErr_SetString(PyExc_TypeError, "retime needs lists of members, rates, touched, loads");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[3]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(members);
    if (PyList_GET_SIZE(rate_list) != n) {
        PyErr_SetString(PyExc_ValueError, "retime needs a rate per member");
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t *slots = arena_take(&t->arena, sizeof(Py_ssize_t) * (size_t)(n + 1));
    double *rates = arena_take(&t->arena, sizeof(double) * (size_t)(n + 1));
    if (!slots || !rates) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (float_at(rate_list, i, &rates[i]) < 0) goto done;
    }
    if (table_scratch(t, PyList_GET_SIZE(load)) < 0 || member_slots(t, members, slots) < 0)
        goto done;
    unsigned long long mark = ++t->walks;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(touched); i++) {
        Record *rec = record_of(t, PyList_GET_ITEM(touched, i));
        if (!rec) goto done;
        rec->walk = mark;
    }
    loads_begin(t);
    int retimed = retime_slots(t, slots, n, rates, mark, now, load);
    if (loads_end(t, load) < 0 || retimed < 0) goto done;
    out = Py_None;
    Py_INCREF(out);
done:
    arena_reset(&t->arena);
    return out;
}

/* clock(slot, now) -> (rate_Bps, virtual_B): the clock of the class in ``slot``: its rate, and
 * the bytes one of its flows has received by now (_FlowClass.virtual_at). */
static PyObject *table_clock(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    double now;
    Record *rec = slot_and_floats(t, args, nargs, 1, "clock(slot, now)", &now);
    if (!rec) return NULL;
    double pair[2] = {rec->rate, record_virtual_at(rec, now)};
    return boxed(pair, 2, box_double, 1);
}

/* state(slot) -> (rate_Bps, virtual_B, ref_s, next_s, check_s, load_Bps): what the table keeps
 * of the class in ``slot`` in place of its _FlowClass fields. */
static PyObject *table_state(ClassTable *t, PyObject *slot) {
    Record *rec = table_record(t, slot);
    if (!rec) return NULL;
    double state[6] = {rec->rate, rec->virtual_B, rec->ref_s, rec->next_s, rec->check_s,
                       rec->load};
    return boxed(state, 6, box_double, 1);
}

/* load_of(slot) -> float: the standing contribution of the class in ``slot``. */
static PyObject *table_load_of(ClassTable *t, PyObject *slot) {
    Record *rec = table_record(t, slot);
    return rec ? PyFloat_FromDouble(rec->load) : NULL;
}

/* next_completion() -> float: the earliest next_s of every class (inf where none). */
static PyObject *table_next_completion(ClassTable *t, PyObject *unused) {
    (void)unused;
    return PyFloat_FromDouble(t->by_next.len ? t->records[t->by_next.items[0]].next_s
                                             : INFINITY);
}

/* due(now, classes, dirty_keys) -> list: FluidNetwork._candidates over this table: the classes
 * whose check_s has come (<= now) and those of dirty_keys still in ``classes``, in entry order. */
static PyObject *table_due(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "due(now, classes, dirty_keys)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[0]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *classes = args[1], *iter = NULL, *item = NULL, *out = NULL;
    if (!PyDict_Check(classes)) {
        PyErr_SetString(PyExc_TypeError, "due needs a dict of classes");
        return NULL;
    }
    Slots *picked = &t->reached, *stack = &t->stack; /* the walk's buffers, free between walks */
    picked->len = stack->len = 0;
    t->walks++; /* a mark, so that a dirty class already due is taken once */
    if (t->by_check.len && slots_push(stack, 0) < 0) return NULL;
    while (stack->len) { /* every entry with a key <= now: a parent's key is at most its own */
        Py_ssize_t i = stack->items[--stack->len];
        Py_ssize_t slot = t->by_check.items[i];
        Record *rec = &t->records[slot];
        if (!(rec->check_s <= now)) continue;
        rec->walk = t->walks;
        if (slots_push(picked, slot) < 0) return NULL;
        for (Py_ssize_t c = 2 * i + 1; c <= 2 * i + 2 && c < t->by_check.len; c++) {
            if (slots_push(stack, c) < 0) return NULL;
        }
    }
    if (!(iter = PyObject_GetIter(args[2]))) return NULL;
    while ((item = PyIter_Next(iter))) {
        PyObject *changed = PyDict_GetItemWithError(classes, item); /* borrowed */
        Py_CLEAR(item);
        if (!changed) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        Record *rec = record_of(t, changed);
        if (!rec) goto done;
        if (rec->walk == t->walks) continue;
        rec->walk = t->walks;
        if (slots_push(picked, rec - t->records) < 0) goto done;
    }
    if (PyErr_Occurred()) goto done;
    if (sort_slots(picked->items, picked->len, t->records, &t->pairs) < 0) goto done;
    if (!(out = PyList_New(picked->len))) goto done;
    for (Py_ssize_t i = 0; i < picked->len; i++) {
        PyObject *cls = t->records[picked->items[i]].cls;
        Py_INCREF(cls);
        PyList_SET_ITEM(out, i, cls);
    }
done:
    Py_XDECREF(iter);
    return out;
}

/* _flush over the ``n`` resources ``res``: each one's carried bytes and busy time brought up
 * to ``now`` at its load, on this table's ledger. Returns 0, or -1 with an exception set. */
static int flush_at(ClassTable *t, const Py_ssize_t *res, Py_ssize_t n, double now,
                    PyObject *load) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = res[i];
        double dt = now - t->since[r];
        if (!(dt > 0)) continue;
        double load_r;
        if (load_get(t, load, r, &load_r) < 0) return -1;
        if (load_r > 0) {
            t->carried[r] = t->carried[r] + load_r * dt;
            t->busy[r] = t->busy[r] + dt;
        }
        t->since[r] = now;
    }
    return 0;
}

/* flush(resources, now, load_Bps): fluid.FluidNetwork._flush on this table's ledger
 * (flush_at): the same doubles. */
static PyObject *table_flush(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "flush(resources, now, load_Bps)");
        return NULL;
    }
    PyObject *load = args[2];
    if (!PyFloat_Check(args[1]) || !PyList_Check(load)) {
        PyErr_SetString(PyExc_TypeError, "flush needs a float time and a list of loads");
        return NULL;
    }
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    if (table_scratch(t, n_res) < 0 || indices_of(args[0], n_res, "load_Bps", &t->res_in) < 0)
        return NULL;
    loads_begin(t);
    int flushed = flush_at(t, t->res_in.items, t->res_in.len, PyFloat_AS_DOUBLE(args[1]), load);
    if (loads_end(t, load) < 0 || flushed < 0) return NULL;
    Py_RETURN_NONE;
}

/* _retime_begin's: each gone class's standing contribution (``own``) taken off ``load`` along
 * its route (``routes``), class after class. Returns 0, or -1 with an exception set. */
static int take_gone(ClassTable *t, PyObject *routes, PyObject *own, PyObject *load) {
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(routes); i++) {
        double amount = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(own, i));
        if (amount == -1.0 && PyErr_Occurred()) return -1;
        if (indices_of(PySequence_Fast_GET_ITEM(routes, i), n_res, "load_Bps", &t->res_in) < 0)
            return -1;
        for (Py_ssize_t k = 0; k < t->res_in.len; k++) {
            Py_ssize_t r = t->res_in.items[k];
            double load_r;
            if (load_get(t, load, r, &load_r) < 0 || load_put(t, r, load_r - amount) < 0)
                return -1;
        }
    }
    return 0;
}

/* The rates of _solve (nothing loose) for the ``n`` members in ``slots`` into ``rates``: one
 * class crossing each resource once in closed form (its cap, or its route's least capacity
 * over its flows, as _solve computes it), more in a solve; *solves counts the solves as
 * _solve does. Returns 0, or -1 with an exception set. */
static int solve_tight(ClassTable *t, const Py_ssize_t *slots, Py_ssize_t n, PyObject *capacity,
                       PyObject *load, PyObject *gone_fast, PyObject *gone_own,
                       double *rates, long *solves) {
    if (n == 1 && t->records[slots[0]].len == t->records[slots[0]].len_full) {
        const Record *rec = &t->records[slots[0]];
        double share = rec->cap, n_flows = (double)PyList_GET_SIZE(rec->flows);
        for (Py_ssize_t k = 0; k < rec->len_full; k++) {
            double capacity_r;
            if (float_at(capacity, rec->full[k], &capacity_r) < 0) return -1;
            if (capacity_r / n_flows < share) share = capacity_r / n_flows;
        }
        *solves += 1;
        rates[0] = share;
        return 0;
    }
    if (!n) return 0;
    *solves += 1;
    return solve_slots(t, slots, n, capacity, load, NULL, 0, gone_fast, gone_own, 0, rates);
}

/* settle(classes, dirty_keys, dirty_res, capacity_Bps, load_Bps, room_Bps, uncapped, demand,
 * gone_routes, gone_loads_Bps, now, peak_Bps) -> (solves, grown): fluid.FluidNetwork._settle's
 * general path (with fast_paths and grow_components, no tracing) in one call over this table:
 * the optimistic walk, its solve (without the loose resources where it has several classes,
 * with them at what is left where that fills one), the walk grown through the loose resources
 * a solve would fill until none does, then _retime (the members' resources flushed, the gone
 * classes' contributions taken off, the loop, the peaks). The same steps on the same floats as
 * the Python's calls to component, solve_without and retime; returns the solves it counted
 * (recomputations) and the times it grew the walk. */
static PyObject *table_settle(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "settle(classes, dirty_keys, dirty_res, capacity_Bps, load_Bps, room_Bps, "
                        "uncapped, demand, gone_routes, gone_loads_Bps, now, peak_Bps)");
        return NULL;
    }
    PyObject *classes = args[0], *capacity = args[3], *load = args[4], *room = args[5];
    PyObject *uncapped = args[6], *demand = args[7], *peak = args[11];
    PyObject *lists[6] = {capacity, load, room, uncapped, demand, peak};
    Py_ssize_t n_res;
    if (!PyDict_Check(classes)) {
        PyErr_SetString(PyExc_TypeError, "settle needs a dict of classes");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[10]);
    if ((now == -1.0 && PyErr_Occurred()) || per_resource(lists, 6, &n_res) < 0) return NULL;
    PyObject *out = NULL, *gone_fast = NULL, *gone_own = NULL;
    long solves = 0, grown = 0;
    double *rates = NULL;
    Py_CLEAR(t->last_members);
    Py_CLEAR(t->last_loose);
    t->tight_res.len = 0;
    if (table_scratch(t, n_res) < 0 || gone_lists(args[8], args[9], &gone_fast, &gone_own) < 0 ||
        changed_classes(t, classes, args[1], NULL) < 0 ||
        indices_of(args[2], n_res, "load_Bps", &t->dirty) < 0)
        goto done;
    loads_begin(t);
    for (;;) { /* _settle's loop: walk, solve, and grow the walk where a loose resource fills */
        /* its resources unsorted: flush and peaks take each on its own */
        if (walk(t, load, room, uncapped, demand, 1, &t->tight_res, 0) < 0) goto done;
        const Py_ssize_t *slots = t->last_slots.items;
        Py_ssize_t n = t->last_slots.len;
        if (!(rates = arena_take(&t->arena, sizeof(double) * (size_t)(n + 1)))) {
            PyErr_NoMemory();
            goto done;
        }
        const Slots *loose = &t->walk_loose;
        if (!loose->len) { /* _solve */
            if (solve_tight(t, slots, n, capacity, load, gone_fast, gone_own, rates, &solves) < 0)
                goto done;
            break;
        }
        if (n > 1) { /* _solve_leaving: _solve_without first */
            solves += 1;
            if (solve_slots(t, slots, n, capacity, load, loose->items, loose->len, gone_fast,
                            gone_own, 0, rates) < 0)
                goto done;
            if (!t->filled.len) break;
            solves -= 1; /* redone with the loose resources, counted as that one solve */
        }
        solves += n > 0;
        if (solve_slots(t, slots, n, capacity, load, loose->items, loose->len, gone_fast,
                        gone_own, 1, rates) < 0)
            goto done;
        if (!t->filled.len) break;
        grown += 1; /* tight |= filled */
        for (Py_ssize_t k = 0; k < t->filled.len; k++) {
            Py_ssize_t r = t->filled.items[k], j = 0;
            while (j < t->tight_res.len && t->tight_res.items[j] != r) j++;
            if (j == t->tight_res.len && slots_push(&t->tight_res, r) < 0) goto done;
        }
    }
    /* _retime: _retime_begin (flush, the gone classes' loads), the loop, _retime_end's peaks */
    const Slots *reached = &t->reached;
    if (flush_at(t, reached->items, reached->len, now, load) < 0 ||
        take_gone(t, gone_fast, gone_own, load) < 0)
        goto done;
    unsigned long long mark = ++t->walks;
    for (Py_ssize_t k = 0; k < t->changed.len; k++) t->records[t->changed.items[k]].walk = mark;
    if (retime_slots(t, t->last_slots.items, t->last_slots.len, rates, mark, now, load) < 0 ||
        peaks_at(t, reached->items, reached->len, load, peak) < 0)
        goto done;
    PyObject *counts[2] = {PyLong_FromLong(solves), PyLong_FromLong(grown)};
    if (counts[0] && counts[1]) out = PyTuple_Pack(2, counts[0], counts[1]);
    Py_XDECREF(counts[0]);
    Py_XDECREF(counts[1]);
done:
    if (loads_end(t, load) < 0) Py_CLEAR(out);
    Py_XDECREF(gone_fast);
    Py_XDECREF(gone_own);
    arena_reset(&t->arena);
    return out;
}

/* ledger(carried_B, since_s, busy_s): this table's ledger written into the network's lists
 * (one entry per resource each), for FluidNetwork.stats. */
static PyObject *table_ledger(ClassTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "ledger(carried_B, since_s, busy_s): three lists");
        return NULL;
    }
    Py_ssize_t n_res = PyList_GET_SIZE(args[0]);
    if (PyList_GET_SIZE(args[1]) != n_res || PyList_GET_SIZE(args[2]) != n_res) {
        PyErr_SetString(PyExc_ValueError, "the per-resource lists differ in length");
        return NULL;
    }
    if (table_scratch(t, n_res) < 0) return NULL;
    const double *from[3] = {t->carried, t->since, t->busy};
    for (int k = 0; k < 3; k++) {
        for (Py_ssize_t r = 0; r < n_res; r++) {
            PyObject *value = PyFloat_FromDouble(from[k][r]);
            if (!value) return NULL;
            PyList_SetItem(args[k], r, value); /* steals value, drops the old one */
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef table_methods[] = {
    {"add", (PyCFunction)(void (*)(void))table_add, METH_FASTCALL,
     "add(cls, order, route, cap_Bps, flows, ref_s) -> slot: register a class (its clock at 0 "
     "bytes from ref_s)."},
    {"remove", (PyCFunction)table_remove, METH_O,
     "remove(slot) -> float: drop the class in slot; returns its standing contribution."},
    {"rerate", (PyCFunction)(void (*)(void))table_rerate, METH_FASTCALL,
     "rerate(slot, rate_Bps, load_Bps, now) -> None: the class in slot runs at rate_Bps from "
     "now, its standing contribution load_Bps, and is re-timed."},
    {"retime", (PyCFunction)(void (*)(void))table_retime, METH_FASTCALL,
     "retime(members, rates, touched, now, load_Bps) -> None: gpusim.engine.fluid.FluidNetwork."
     "_retime's loop in C over this table (the same floats)."},
    {"clock", (PyCFunction)(void (*)(void))table_clock, METH_FASTCALL,
     "clock(slot, now) -> (rate_Bps, virtual_B): the class's rate and its clock at now."},
    {"state", (PyCFunction)table_state, METH_O,
     "state(slot) -> (rate_Bps, virtual_B, ref_s, next_s, check_s, load_Bps): the class's "
     "clock, completion times and standing contribution."},
    {"load_of", (PyCFunction)table_load_of, METH_O,
     "load_of(slot) -> float: the standing contribution of the class in slot."},
    {"sharers", (PyCFunction)table_sharers, METH_O,
     "sharers(r) -> int: how many registered classes cross resource r."},
    {"solve_without", (PyCFunction)(void (*)(void))table_solve_without, METH_FASTCALL,
     "solve_without(members, capacity_Bps, load_Bps, loose, gone_routes, gone_loads_Bps, "
     "with_loose) -> (list[float] | None, list[int]): "
     "gpusim.engine.fluid.FluidNetwork._solve_without in C "
     "over this table (the same floats): the members' max-min rates with the loose resources "
     "left out of their routes, and the loose resources those rates would fill of what the "
     "classes outside leave (their load less the members' standing contributions, as retimed "
     "last gave them, and gone_loads_Bps of the gone ones); the rates are None where any would "
     "fill. With with_loose, the loose resources stay in the routes at what the classes outside "
     "leave of them (_solve_leaving's general path), with the same check."},
    {"retimed", (PyCFunction)(void (*)(void))table_retimed, METH_FASTCALL,
     "retimed(slot, check_s, next_s, load_Bps) -> None: the class in slot was re-timed "
     "(gpusim.engine.fluid._FlowClass.retime), its standing contribution now load_Bps."},
    {"next_completion", (PyCFunction)table_next_completion, METH_NOARGS,
     "next_completion() -> float: the earliest next_s of every class (inf where none)."},
    {"due", (PyCFunction)(void (*)(void))table_due, METH_FASTCALL,
     "due(now, classes, dirty_keys) -> list: gpusim.engine.fluid.FluidNetwork._candidates over "
     "this table (the classes whose check_s has come and the changed ones, in entry order)."},
    {"flush", (PyCFunction)(void (*)(void))table_flush, METH_FASTCALL,
     "flush(resources, now, load_Bps) -> None: gpusim.engine.fluid.FluidNetwork._flush on this "
     "table's ledger (the same floats)."},
    {"ledger", (PyCFunction)(void (*)(void))table_ledger, METH_FASTCALL,
     "ledger(carried_B, since_s, busy_s) -> None: this table's ledger written into the lists."},
    {"peaks", (PyCFunction)(void (*)(void))table_peaks, METH_FASTCALL,
     "peaks(resources, load_Bps, peak_Bps) -> None: gpusim.engine.fluid.FluidNetwork."
     "_retime_end's peaks over this table's classes per resource (a resource none crosses has "
     "its load zeroed; any other's peak rises to its load)."},
    {"settle", (PyCFunction)(void (*)(void))table_settle, METH_FASTCALL,
     "settle(classes, dirty_keys, dirty_res, capacity_Bps, load_Bps, room_Bps, uncapped, demand, "
     "gone_routes, gone_loads_Bps, now, peak_Bps) -> (solves, grown): gpusim.engine.fluid."
     "FluidNetwork._settle's general path in one call over this table (the walk, solves and "
     "growth of component and solve_without, then retime, flush and peaks: the same floats)."},
    {"component", (PyCFunction)(void (*)(void))table_component, METH_FASTCALL,
     "component(classes, dirty_keys, dirty_res, load_Bps, room_Bps, uncapped, demand, "
     "optimistic, tight) -> (members, resources, touched, loose): "
     "gpusim.engine.fluid.FluidNetwork._component in C over this table (the same members in "
     "entry order, the same resources ascending, the same changed classes and loose resources, "
     "as lists)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ClassTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gpusim.engine._maxmin_c.ClassTable",
    .tp_basicsize = sizeof(ClassTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fluid network's classes as its settle's walk reads them: per class its entry "
              "order and route, per resource the classes crossing it.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_traverse = (traverseproc)table_traverse,
    .tp_clear = (inquiry)table_clear,
    .tp_methods = table_methods,
};

static PyMethodDef methods[] = {
    {"max_min_fair_rates", (PyCFunction)(void (*)(void))max_min_fair_rates, METH_FASTCALL,
     "max_min_fair_rates(routes, counts, caps_Bps, capacity_Bps) -> list[float]: "
     "gpusim.engine.maxmin's solve in C (the same floats)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_maxmin_c",
    .m_doc = "The fluid network's max-min solves and settle steps in C (gpusim.engine.maxmin's "
             "and gpusim.engine.fluid's twins): the same floats, on C arrays.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__maxmin_c(void) {
    slot_name = PyUnicode_InternFromString("slot");
    if (!slot_name || PyType_Ready(&ClassTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ClassTableType);
    if (PyModule_AddObject(m, "ClassTable", (PyObject *)&ClassTableType) < 0) {
        Py_DECREF(&ClassTableType);
        Py_DECREF(m);
        return NULL;
    }
    /* the tolerances, for the test that holds them to the Python's */
    if (PyModule_AddObject(m, "REL_TOL", PyFloat_FromDouble(REL_TOL)) < 0 ||
        PyModule_AddObject(m, "SLACK_REL", PyFloat_FromDouble(SLACK_REL)) < 0 ||
        PyModule_AddObject(m, "WAKE_WINDOW_REL", PyFloat_FromDouble(WAKE_WINDOW_REL)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
