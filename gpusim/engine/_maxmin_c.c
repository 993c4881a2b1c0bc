/* The fluid network's max-min solves and settle steps in C, twins of Python code that stays the
 * reference:
 *
 * - max_min_fair_rates: gpusim/engine/maxmin.py's max_min_fair_rates (its _Loads, _one_level_of,
 *   _fill and _fix, with the one-level closed form and the last-round shortcut on);
 * - solve_without: gpusim/engine/fluid.py's FluidNetwork._solve_without with its _cut and _fills
 *   (the optimistic solve of a component, its loose resources masked out of the routes and
 *   checked after);
 * - component: FluidNetwork._component (the walk that finds what a settle must re-solve), which
 *   builds the same Python sets by the same insertions, so that they iterate alike;
 * - flush: FluidNetwork._flush (resources' carried bytes and busy time brought up to now).
 *
 * Each does the same IEEE double operations in the same order as its twin, so it gives the same
 * floats: the compiled engine calls these where the Python would run (gpusim/native.py decides;
 * tests/test_engine_properties.py compares each with its twin, bit for bit). What they save is
 * mypyc's boxed floats, generic lists and set lookups: the solves work on C arrays, the walk on
 * marks. Build with
 * floating-point contraction off (setup.py): a fused multiply-add would round once where Python
 * rounds twice.
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

typedef struct {
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

static void problem_free(Problem *p) {
    free(p->counts);
    free(p->caps);
    free(p->full_at);
    free(p->full);
    free(p->route_at);
    free(p->route);
    free(p->left);
    free(p->flows);
    free(p->users_at);
    free(p->users);
}

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

/* Read the inputs (every resource index of every route checked to lie in capacity_Bps) and
 * number the resources by first appearance (class order, then route order), as maxmin._Loads
 * does; a resource marked in ``excluded`` (NULL: none) is left out of every route, as if the
 * routes had been given without it (the whole routes stay in full). Returns 0, or -1 with a
 * Python exception set; p is to be freed either way. */
static int problem_read(Problem *p, PyObject *routes, PyObject *counts, PyObject *caps,
                        PyObject *capacity, const char *excluded) {
    PyObject *routes_fast = NULL, *counts_fast = NULL, *caps_fast = NULL, *cap_fast = NULL;
    PyObject *route_fast = NULL;
    Py_ssize_t *number = NULL, *next_user = NULL;
    int status = -1;
    memset(p, 0, sizeof(*p));

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
    p->counts = malloc(sizeof(long) * (size_t)(n + 1));
    p->caps = malloc(sizeof(double) * (size_t)(n + 1));
    p->full_at = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    p->route_at = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    number = malloc(sizeof(Py_ssize_t) * (size_t)(n_cap + 1));
    if (!p->counts || !p->caps || !p->full_at || !p->route_at || !number) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < n_cap; r++) number[r] = -1;

    Py_ssize_t total = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        PyObject *route = PySequence_Fast_GET_ITEM(routes_fast, c);
        total += PySequence_Check(route) ? PySequence_Size(route) : 0;
        if (PyErr_Occurred()) goto done;
    }
    p->full = malloc(sizeof(Py_ssize_t) * (size_t)(total + 1));
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
    p->left = malloc(sizeof(double) * (size_t)(at_full + 1));
    p->flows = malloc(sizeof(long) * (size_t)(at_full + 1));
    p->route = malloc(sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    p->users_at = calloc((size_t)(at_full + 2), sizeof(Py_ssize_t));
    p->users = malloc(sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    next_user = malloc(sizeof(Py_ssize_t) * (size_t)(at_full + 1));
    if (!p->route || !p->left || !p->flows || !p->users_at || !p->users || !next_user) {
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
                double capacity_r = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(cap_fast, r));
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
    Py_XDECREF(route_fast);
    free(number);
    free(next_user);
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

static const double *sort_caps;

/* (cap, class) ascending, as Python sorts the tuples */
static int by_cap_then_class(const void *a, const void *b) {
    Py_ssize_t x = *(const Py_ssize_t *)a, y = *(const Py_ssize_t *)b;
    if (sort_caps[x] < sort_caps[y]) return -1;
    if (sort_caps[y] < sort_caps[x]) return 1;
    return (x > y) - (x < y);
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
    int status = -1;
    char *fixed = calloc((size_t)(n + 1), 1);
    char *live = malloc((size_t)(n_res + 1));
    char *seen = calloc((size_t)(n + 1), 1);
    Py_ssize_t *capped = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    Py_ssize_t *alive = malloc(sizeof(Py_ssize_t) * (size_t)(n_res + 1));
    Py_ssize_t *saturated = malloc(sizeof(Py_ssize_t) * (size_t)(n_res + 1));
    /* every crossing and every capped class at most once each round */
    Py_ssize_t *to_fix = malloc(sizeof(Py_ssize_t) * (size_t)(p->users_at[n_res] + n + 1));
    if (!fixed || !live || !seen || !capped || !alive || !saturated || !to_fix) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t unfixed = 0, n_capped = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        rates[c] = 0.0;
        fixed[c] = p->counts[c] <= 0;
        if (!fixed[c]) unfixed++;
        if (p->caps[c] < INFINITY && !fixed[c]) capped[n_capped++] = c;
    }
    sort_caps = p->caps;
    qsort(capped, (size_t)n_capped, sizeof(Py_ssize_t), by_cap_then_class);
    if (n_capped && p->caps[capped[0]] <= 0) {
        PyErr_SetString(PyExc_ValueError, "flow caps must be positive");
        goto done;
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
    status = 0;
done:
    free(fixed);
    free(live);
    free(seen);
    free(capped);
    free(alive);
    free(saturated);
    free(to_fix);
    return status;
}

static PyObject *rates_list(const double *rates, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t c = 0; c < n; c++) {
        PyObject *rate = PyFloat_FromDouble(rates[c]);
        if (!rate) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, c, rate);
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
    if (problem_read(&p, args[0], args[1], args[2], args[3], NULL) < 0) goto done;
    rates = malloc(sizeof(double) * (size_t)(p.n + 1));
    if (!rates) {
        PyErr_NoMemory();
        goto done;
    }
    if (solve(&p, rates) == 0) out = rates_list(rates, p.n);
done:
    free(rates);
    problem_free(&p);
    return out;
}

static const double SLACK_REL = 1.0 - 1e-9; /* fluid.py's _SLACK_REL (SLACK_REL: compared alike) */

/* Subtract ``amount`` from ``left[r]`` for each loose resource r of ``route`` (in route order,
 * a repeat subtracted again). Returns 0, or -1 with a Python exception set. */
static int take_off(PyObject *route, double amount, const char *loose, double *left,
                    Py_ssize_t n_cap) {
    PyObject *fast = PySequence_Fast(route, "each route must be a sequence");
    if (!fast) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        Py_ssize_t r = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
        if (r == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (r >= 0 && r < n_cap && loose[r]) left[r] = left[r] - amount;
    }
    Py_DECREF(fast);
    return 0;
}

/* fluid.FluidNetwork._solve_without, its _cut and its _fills in one: see solve_without's
 * docstring below. */
static PyObject *solve_without(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "solve_without(routes, counts, caps_Bps, loads_Bps, capacity_Bps, "
                        "load_Bps, loose, gone_routes, gone_loads_Bps)");
        return NULL;
    }
    PyObject *routes = args[0], *counts = args[1], *caps = args[2], *own = args[3];
    PyObject *capacity = args[4], *load = args[5], *loose_set = args[6];
    PyObject *gone_routes = args[7], *gone_own = args[8];
    PyObject *out = NULL, *filled = NULL, *rates_out = NULL, *iter = NULL, *item = NULL;
    PyObject *routes_fast = NULL, *own_fast = NULL, *gone_fast = NULL, *gone_own_fast = NULL;
    PyObject *cap_fast = NULL, *load_fast = NULL;
    Py_ssize_t *loose_list = NULL, n_loose = 0;
    char *is_loose = NULL;
    double *left = NULL, *drawn = NULL, *rates = NULL;
    Problem p;
    int read = 0;

    cap_fast = PySequence_Fast(capacity, "capacity_Bps must be a sequence");
    load_fast = PySequence_Fast(load, "load_Bps must be a sequence");
    routes_fast = PySequence_Fast(routes, "routes must be a sequence");
    own_fast = PySequence_Fast(own, "loads_Bps must be a sequence");
    gone_fast = PySequence_Fast(gone_routes, "gone_routes must be a sequence");
    gone_own_fast = PySequence_Fast(gone_own, "gone_loads_Bps must be a sequence");
    if (!cap_fast || !load_fast || !routes_fast || !own_fast || !gone_fast || !gone_own_fast) {
        goto done;
    }
    Py_ssize_t n_cap = PySequence_Fast_GET_SIZE(cap_fast);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(routes_fast);
    if (PySequence_Fast_GET_SIZE(load_fast) < n_cap || PySequence_Fast_GET_SIZE(own_fast) < n ||
        PySequence_Fast_GET_SIZE(gone_own_fast) < PySequence_Fast_GET_SIZE(gone_fast)) {
        PyErr_SetString(PyExc_IndexError, "solve_without: a list is shorter than it must be");
        goto done;
    }
    is_loose = calloc((size_t)(n_cap + 1), 1);
    left = malloc(sizeof(double) * (size_t)(n_cap + 1));
    drawn = malloc(sizeof(double) * (size_t)(n_cap + 1));
    loose_list = malloc(sizeof(Py_ssize_t) * (size_t)(n_cap + 1));
    rates = malloc(sizeof(double) * (size_t)(n + 1));
    if (!is_loose || !left || !drawn || !loose_list || !rates) {
        PyErr_NoMemory();
        goto done;
    }
    /* outside: each loose resource's load, less the standing contributions taken off below */
    iter = PyObject_GetIter(loose_set);
    if (!iter) goto done;
    while ((item = PyIter_Next(iter))) {
        Py_ssize_t r;
        int bad = resource_index(item, n_cap, "capacity_Bps", &r);
        Py_CLEAR(item);
        if (bad) goto done;
        if (is_loose[r]) continue;
        is_loose[r] = 1;
        loose_list[n_loose++] = r;
        left[r] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(load_fast, r));
        if (left[r] == -1.0 && PyErr_Occurred()) goto done;
    }
    if (PyErr_Occurred()) goto done;
    read = 1; /* problem_read leaves p to free, read or not */
    if (problem_read(&p, routes, counts, caps, capacity, is_loose) < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) { /* the component's classes, then the gone ones */
        double amount = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(own_fast, i));
        if (amount == -1.0 && PyErr_Occurred()) goto done;
        for (Py_ssize_t k = p.full_at[i]; k < p.full_at[i + 1]; k++) {
            Py_ssize_t r = p.full[k];
            if (is_loose[r]) left[r] = left[r] - amount;
        }
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(gone_fast); i++) {
        double amount = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(gone_own_fast, i));
        if (amount == -1.0 && PyErr_Occurred()) goto done;
        if (take_off(PySequence_Fast_GET_ITEM(gone_fast, i), amount, is_loose, left, n_cap)) {
            goto done;
        }
    }
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
    filled = PyList_New(0);
    if (!filled) goto done;
    for (Py_ssize_t k = 0; k < n_loose; k++) {
        Py_ssize_t r = loose_list[k];
        double capacity_r = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(cap_fast, r));
        if (capacity_r == -1.0 && PyErr_Occurred()) goto done;
        double d = drawn[r];
        if (d > 0 && d >= (capacity_r - left[r]) * SLACK_REL) {
            PyObject *index = PyLong_FromSsize_t(r);
            if (!index || PyList_Append(filled, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    if (PyList_GET_SIZE(filled)) {
        rates_out = Py_None;
        Py_INCREF(rates_out);
    } else {
        rates_out = rates_list(rates, n);
        if (!rates_out) goto done;
    }
    out = PyTuple_Pack(2, rates_out, filled);
done:
    Py_XDECREF(iter);
    Py_XDECREF(rates_out);
    Py_XDECREF(filled);
    Py_XDECREF(cap_fast);
    Py_XDECREF(load_fast);
    Py_XDECREF(routes_fast);
    Py_XDECREF(own_fast);
    Py_XDECREF(gone_fast);
    Py_XDECREF(gone_own_fast);
    free(is_loose);
    free(left);
    free(drawn);
    free(loose_list);
    free(rates);
    if (read) problem_free(&p);
    return out;
}

/* ---- fluid.FluidNetwork._component ------------------------------------------------------- */

/* A set of objects by identity (open addressing on the address): which classes the walk has
 * taken. Identity is the classes' equality (fluid._FlowClass compares by identity), so this
 * answers what ``cls in members`` answers, without calling each class's __hash__. */
typedef struct {
    PyObject **slots;
    size_t mask;
    size_t used;
} Taken;

static size_t taken_home(const Taken *t, const PyObject *o) {
    return (size_t)(((uintptr_t)o >> 4) * (uintptr_t)0x9E3779B97F4A7C15ULL) & t->mask;
}

/* Add ``o``: 1 if it was not there, 0 if it was, -1 with MemoryError set. */
static int taken_add(Taken *t, PyObject *o) {
    if (2 * (t->used + 1) > t->mask + 1) {
        size_t size = 2 * (t->mask + 1);
        PyObject **old = t->slots;
        size_t old_size = t->mask + 1;
        PyObject **slots = calloc(size, sizeof(PyObject *));
        if (!slots) {
            PyErr_NoMemory();
            return -1;
        }
        t->slots = slots;
        t->mask = size - 1;
        for (size_t i = 0; i < old_size; i++) {
            if (!old[i]) continue;
            size_t j = taken_home(t, old[i]);
            while (slots[j]) j = (j + 1) & t->mask;
            slots[j] = old[i];
        }
        free(old);
    }
    size_t j = taken_home(t, o);
    while (t->slots[j]) {
        if (t->slots[j] == o) return 0;
        j = (j + 1) & t->mask;
    }
    t->slots[j] = o;
    t->used++;
    return 1;
}

/* Per resource, a walk's marks (one byte each, allocated per walk: no state between calls). */
enum { VISITED = 1, SEEDED = 2 };

/* Stack of resource indices; grows as routes are pushed. */
typedef struct {
    Py_ssize_t *items;
    Py_ssize_t len, size;
} Stack;

static int stack_push_route(Stack *s, PyObject *route, Py_ssize_t n_res) {
    PyObject *fast = PySequence_Fast(route, "each route must be a sequence");
    if (!fast) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (s->len + len > s->size) {
        Py_ssize_t size = 2 * (s->len + len) + 16;
        Py_ssize_t *items = realloc(s->items, sizeof(Py_ssize_t) * (size_t)size);
        if (!items) {
            Py_DECREF(fast);
            PyErr_NoMemory();
            return -1;
        }
        s->items = items;
        s->size = size;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_ssize_t r;
        if (resource_index(PySequence_Fast_GET_ITEM(fast, i), n_res, "load_Bps", &r) < 0) {
            Py_DECREF(fast);
            return -1;
        }
        s->items[s->len++] = r;
    }
    Py_DECREF(fast);
    return 0;
}

static PyObject *route_name = NULL; /* "route", interned at import */

static int float_at(PyObject *list, Py_ssize_t r, double *out) {
    *out = PyFloat_AsDouble(PyList_GET_ITEM(list, r));
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* A class crossing a resource the walk goes through: unless taken, take it (members.add) and
 * push its route. Returns 0, or -1 with a Python exception set. */
static int take_sharer(PyObject *cls, Taken *taken, PyObject *members, Stack *stack,
                       Py_ssize_t n_res) {
    int added = taken_add(taken, cls);
    if (added <= 0) return added;
    if (PySet_Add(members, cls) < 0) return -1;
    PyObject *route = PyObject_GetAttr(cls, route_name);
    if (!route) return -1;
    int pushed = stack_push_route(stack, route, n_res);
    Py_DECREF(route);
    return pushed;
}

/* ``for cls in sharers: if cls not in members: ...`` (take_sharer), in the set's order. */
static int walk_sharers(PyObject *sharers, Taken *taken, PyObject *members, Stack *stack,
                        Py_ssize_t n_res) {
#if PY_VERSION_HEX < 0x030D0000
    if (PyAnySet_Check(sharers)) { /* its table directly: the order its iterator gives */
        Py_ssize_t pos = 0;
        PyObject *cls;
        Py_hash_t hash;
        while (_PySet_NextEntry(sharers, &pos, &cls, &hash)) {
            if (take_sharer(cls, taken, members, stack, n_res) < 0) return -1;
        }
        return 0;
    }
#endif
    PyObject *iter = PyObject_GetIter(sharers), *cls;
    if (!iter) return -1;
    while ((cls = PyIter_Next(iter))) {
        int taken_ok = take_sharer(cls, taken, members, stack, n_res);
        Py_DECREF(cls);
        if (taken_ok < 0) break;
    }
    Py_DECREF(iter);
    return PyErr_Occurred() ? -1 : 0;
}

/* fluid.FluidNetwork._component (see its docstring), over the network's own containers: the
 * same members in the same order, and the same sets built by the same insertions (so they
 * iterate alike). The Python's set lookups that only ask "seen yet?" are marks here. */
static PyObject *component(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "component(classes, dirty_keys, dirty_res, load_Bps, room_Bps, uncapped, "
                        "demand, users, optimistic, tight)");
        return NULL;
    }
    PyObject *classes = args[0], *dirty_keys = args[1], *dirty_res = args[2];
    PyObject *load = args[3], *room_Bps = args[4], *uncapped = args[5], *demand = args[6];
    PyObject *users = args[7], *tight = args[9];
    int optimistic = PyObject_IsTrue(args[8]);
    if (optimistic < 0) return NULL;
    if (!PyDict_Check(classes) || !PyDict_Check(users) || !PyList_Check(load) ||
        !PyList_Check(room_Bps) || !PyList_Check(uncapped) || !PyList_Check(demand) ||
        !PyAnySet_Check(tight)) {
        PyErr_SetString(PyExc_TypeError,
                        "component needs dicts of classes and users, lists per resource and a "
                        "set of tight resources");
        return NULL;
    }
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    if (PyList_GET_SIZE(room_Bps) != n_res || PyList_GET_SIZE(uncapped) != n_res ||
        PyList_GET_SIZE(demand) != n_res) {
        PyErr_SetString(PyExc_ValueError, "the per-resource lists differ in length");
        return NULL;
    }
    PyObject *touched = NULL, *members = NULL, *seeds = NULL, *resources = NULL, *loose = NULL;
    PyObject *iter = NULL, *item = NULL, *route = NULL, *index = NULL, *out = NULL;
    PyObject *member_list = NULL;
    Taken taken = {NULL, 63, 0};
    Stack stack = {NULL, 0, 0};
    unsigned char *marks = calloc((size_t)n_res + 1, 1);
    taken.slots = calloc(64, sizeof(PyObject *));
    if (!marks || !taken.slots) {
        PyErr_NoMemory();
        goto done;
    }

    touched = PySet_New(NULL);
    if (!touched || !(iter = PyObject_GetIter(dirty_keys))) goto done;
    while ((item = PyIter_Next(iter))) {
        PyObject *changed = PyDict_GetItemWithError(classes, item); /* borrowed */
        Py_CLEAR(item);
        if (!changed) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        if (PySet_Add(touched, changed) < 0) goto done;
    }
    Py_CLEAR(iter);
    if (PyErr_Occurred()) goto done;
    members = PySet_New(touched); /* set(touched) */
    seeds = PySet_New(dirty_res);
    if (!members || !seeds || !(iter = PyObject_GetIter(members))) goto done;
    while ((item = PyIter_Next(iter))) {
        if (taken_add(&taken, item) < 0) goto done;
        route = PyObject_GetAttr(item, route_name);
        Py_CLEAR(item);
        if (!route) goto done;
        PyObject *route_iter = PyObject_GetIter(route); /* seeds.update(cls.route) */
        Py_CLEAR(route);
        if (!route_iter) goto done;
        PyObject *r_obj;
        while ((r_obj = PyIter_Next(route_iter))) {
            int added = PySet_Add(seeds, r_obj);
            Py_DECREF(r_obj);
            if (added < 0) break;
        }
        Py_DECREF(route_iter);
        if (PyErr_Occurred()) goto done;
    }
    Py_CLEAR(iter);
    if (PyErr_Occurred()) goto done;
    if (!(iter = PyObject_GetIter(seeds))) goto done; /* stack = list(seeds) */
    stack.size = PySet_GET_SIZE(seeds) + 16;
    stack.items = malloc(sizeof(Py_ssize_t) * (size_t)stack.size);
    if (!stack.items) {
        PyErr_NoMemory();
        goto done;
    }
    while ((item = PyIter_Next(iter))) {
        Py_ssize_t r;
        int bad = resource_index(item, n_res, "load_Bps", &r);
        Py_CLEAR(item);
        if (bad) goto done;
        marks[r] |= SEEDED;
        stack.items[stack.len++] = r;
    }
    Py_CLEAR(iter);
    if (PyErr_Occurred()) goto done;

    resources = PySet_New(NULL);
    loose = PySet_New(NULL);
    if (!resources || !loose) goto done;
    while (stack.len) {
        Py_ssize_t r = stack.items[--stack.len];
        if (marks[r] & VISITED) continue;
        marks[r] |= VISITED;
        index = PyLong_FromSsize_t(r);
        if (!index || PySet_Add(resources, index) < 0) goto done;
        double room, load_r, demand_r;
        if (float_at(room_Bps, r, &room) < 0 || float_at(load, r, &load_r) < 0) goto done;
        int below = load_r < room;
        int none_uncapped = PyObject_Not(PyList_GET_ITEM(uncapped, r));
        if (none_uncapped < 0) goto done;
        if (none_uncapped) {
            if (float_at(demand, r, &demand_r) < 0) goto done;
            if (demand_r <= room && (below || !(marks[r] & SEEDED))) {
                Py_CLEAR(index);
                continue; /* cannot saturate: its capacity is never in question */
            }
        }
        PyObject *sharers = PyDict_GetItemWithError(users, index); /* borrowed */
        if (!sharers) {
            if (PyErr_Occurred()) goto done;
            Py_CLEAR(index);
            continue; /* no class crosses it */
        }
        if (optimistic && below) {
            Py_ssize_t n_sharers = PyObject_Size(sharers);
            if (n_sharers < 0) goto done;
            if (n_sharers > 1) {
                int is_tight = PySet_Contains(tight, index);
                if (is_tight < 0) goto done;
                if (!is_tight) {
                    if (PySet_Add(loose, index) < 0) goto done;
                    Py_CLEAR(index);
                    continue;
                }
            }
        }
        Py_CLEAR(index);
        Py_INCREF(sharers); /* the walk below runs Python (a class's __hash__): hold it */
        int walked = walk_sharers(sharers, &taken, members, &stack, n_res);
        Py_DECREF(sharers);
        if (walked < 0) goto done;
    }
    member_list = PySequence_List(members);
    if (member_list) out = PyTuple_Pack(4, member_list, resources, touched, loose);
done:
    Py_XDECREF(iter);
    Py_XDECREF(item);
    Py_XDECREF(route);
    Py_XDECREF(index);
    Py_XDECREF(member_list);
    Py_XDECREF(touched);
    Py_XDECREF(members);
    Py_XDECREF(seeds);
    Py_XDECREF(resources);
    Py_XDECREF(loose);
    free(marks);
    free(taken.slots);
    free(stack.items);
    return out;
}

/* ---- fluid.FluidNetwork._flush ----------------------------------------------------------- */

/* list[r] = value (a new float). Returns 0, or -1 with a Python exception set. */
static int float_put(PyObject *list, Py_ssize_t r, double value) {
    PyObject *f = PyFloat_FromDouble(value);
    if (!f) return -1;
    PyObject *old = PyList_GET_ITEM(list, r);
    PyList_SET_ITEM(list, r, f);
    Py_DECREF(old);
    return 0;
}

/* One resource of flush (an index checked to lie in the lists): brought up to now_s at its
 * load. */
static int flush_one(Py_ssize_t r, double now_s, PyObject *now, PyObject *load, PyObject *since,
                     PyObject *carried, PyObject *busy) {
    double since_s, load_r, carried_r, busy_r;
    if (float_at(since, r, &since_s) < 0) return -1;
    double dt = now_s - since_s;
    if (!(dt > 0)) return 0;
    if (float_at(load, r, &load_r) < 0) return -1;
    if (load_r > 0) {
        if (float_at(carried, r, &carried_r) < 0 || float_at(busy, r, &busy_r) < 0) return -1;
        if (float_put(carried, r, carried_r + load_r * dt) < 0) return -1;
        if (float_put(busy, r, busy_r + dt) < 0) return -1;
    }
    PyObject *old = PyList_GET_ITEM(since, r);
    Py_INCREF(now);
    PyList_SET_ITEM(since, r, now);
    Py_DECREF(old);
    return 0;
}

/* fluid.FluidNetwork._flush (see its docstring), on the network's per-resource lists. */
static PyObject *flush(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "flush(resources, now, load_Bps, since_s, carried_B, busy_s)");
        return NULL;
    }
    PyObject *resources = args[0], *now = args[1], *load = args[2], *since = args[3];
    PyObject *carried = args[4], *busy = args[5];
    if (!PyFloat_Check(now) || !PyList_Check(load) || !PyList_Check(since) ||
        !PyList_Check(carried) || !PyList_Check(busy)) {
        PyErr_SetString(PyExc_TypeError, "flush needs a float time and lists per resource");
        return NULL;
    }
    Py_ssize_t n_res = PyList_GET_SIZE(load);
    if (PyList_GET_SIZE(since) != n_res || PyList_GET_SIZE(carried) != n_res ||
        PyList_GET_SIZE(busy) != n_res) {
        PyErr_SetString(PyExc_ValueError, "the per-resource lists differ in length");
        return NULL;
    }
    double now_s = PyFloat_AS_DOUBLE(now);
    PyObject *fast = PySequence_Fast(resources, "resources must be iterable");
    if (!fast) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        Py_ssize_t r;
        if (resource_index(PySequence_Fast_GET_ITEM(fast, i), n_res, "load_Bps", &r) < 0 ||
            flush_one(r, now_s, now, load, since, carried, busy) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"max_min_fair_rates", (PyCFunction)(void (*)(void))max_min_fair_rates, METH_FASTCALL,
     "max_min_fair_rates(routes, counts, caps_Bps, capacity_Bps) -> list[float]: "
     "gpusim.engine.maxmin's solve in C (the same floats)."},
    {"solve_without", (PyCFunction)(void (*)(void))solve_without, METH_FASTCALL,
     "solve_without(routes, counts, caps_Bps, loads_Bps, capacity_Bps, load_Bps, loose, "
     "gone_routes, gone_loads_Bps) -> (list[float] | None, list[int]): "
     "gpusim.engine.fluid.FluidNetwork._solve_without in C (the same floats): the component's "
     "max-min rates with the loose resources left out of its routes, and the loose resources "
     "those rates would fill of what the classes outside leave (their load less the standing "
     "contributions loads_Bps of the component's classes and gone_loads_Bps of the gone ones); "
     "the rates are None where any would fill."},
    {"component", (PyCFunction)(void (*)(void))component, METH_FASTCALL,
     "component(classes, dirty_keys, dirty_res, load_Bps, room_Bps, uncapped, demand, users, "
     "optimistic, tight) -> (members, resources, touched, loose): "
     "gpusim.engine.fluid.FluidNetwork._component in C (the same members in the same order, "
     "the same sets)."},
    {"flush", (PyCFunction)(void (*)(void))flush, METH_FASTCALL,
     "flush(resources, now, load_Bps, since_s, carried_B, busy_s) -> None: "
     "gpusim.engine.fluid.FluidNetwork._flush in C (the same floats)."},
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
    route_name = PyUnicode_InternFromString("route");
    if (!route_name) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    /* the tolerances, for the test that holds them to the Python's */
    if (PyModule_AddObject(m, "REL_TOL", PyFloat_FromDouble(REL_TOL)) < 0 ||
        PyModule_AddObject(m, "SLACK_REL", PyFloat_FromDouble(SLACK_REL)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
