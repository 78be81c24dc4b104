/* Span logit KD's passes over the vocabulary, compiled (optional: sra_viz/distill/span_kd.py gives the
 * same values with torch operations and runs when this module is not built or the tensors are not
 * float32 on the CPU).
 *
 *   span_kl(x, token_row, share, mask, z_t, diff, kl, n_vocab, threads)
 *       For each valid span m (rows of z_t):
 *           z_S   = mask + Σ_{t: token_row[t] = m} share[t] · x[t]         (the pooled student logits)
 *           KL_m  = Σ_v p_T (z_T − z_S) − lse(z_T) + lse(z_S)                -> kl[m] (float64)
 *           diff[m] = softmax(z_S) − softmax(z_T)                            (what the backward reads)
 *       torch: z_s = addmm(mask, P, x); p_s, p_t = softmax(z_s), softmax(z_t); ... (span_kd._kl_rows)
 *
 *   row_lse(x, rows, lse, n_vocab, threads)
 *       lse[r] = log Σ_v exp(x[rows[r], v]) (float64): the log-normaliser of the CE's label rows.
 *       torch: torch.logsumexp(x[rows], -1)
 *
 *   spread_rows(diff, token_row, scale, grad, n_vocab, threads[, x, ce_weight, ce_lse])
 *       grad[t] = scale[t] · diff[token_row[t]] (0 where token_row[t] = M: no valid span)
 *                 + ce_weight[t] · softmax(x[t])   with softmax(x[t]) = exp(x[t] − ce_lse[t])
 *       torch: diff.index_select(0, token_row.clamp_max(M − 1)).mul_(scale[:, None]), then
 *              grad.index_add_(0, ce_rows, softmax(x[ce_rows]), alpha=g_CE / R)
 *
 * Arrays are C-contiguous buffers (numpy views of the tensors): x, diff, z_t, grad float32 row-major
 * (rows × n_vocab), token_row int64 (T,), share and scale float32 (T,), mask float32 (n_vocab,) or None,
 * kl float64 (M,), rows int64, ce_weight float32 (T,), ce_lse float64 (T,). Every size and index is checked first (ValueError); the GIL is released while the
 * rows are computed, rows split over ``threads`` OpenMP threads. Built with -fopenmp, the module links
 * libgomp.so.1, which resolves to the copy torch has already loaded: the rows run on torch's own worker
 * threads (a second thread pool would share the cores with torch's workers, which spin for some
 * milliseconds after each of torch's parallel operations: measured, that halved the gain).
 *
 * Why compiled: torch takes each step as its own pass over an (M, V) tensor (M ≈ 180 spans, V ≈ 49k:
 * 35 MB), about ten of them; here each span's rows stay in the core's cache between steps and memory is
 * crossed about once. On the default batch, forward 23 -> 8-9 ms, backward's row gather 6.4 -> 2.6 ms.
 *
 * Numerics: exp is Cephes' single-precision polynomial (2^k · p(r), |r| ≤ ln 2 / 2; within 1.4 units in
 * the last place on [−80, 0]); arguments below −87 give 0 (torch gives subnormals there; both vanish in
 * float32 sums). Sums run in float32 vector lanes over blocks of BLOCK columns and add up in float64.
 * Results do not depend on the thread count (each row is one thread's).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#define THREAD_NUM omp_get_thread_num()
#else
#define THREAD_NUM 0
#endif

/* One build carries AVX-512, AVX2 and baseline versions of the column loops; the loader picks the one
 * the CPU runs (GCC on x86-64 Linux; other compilers build the baseline version alone). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define BLOCK 256 /* columns summed in float32 lanes before a float64 add */

/* exp(x) for x <= 0: 2^k p(r) with k = round(x / ln 2), r = x − k ln 2 (in two parts); 0 below −87. */
static inline float
exp_nonpositive(float x)
{
    const float round_big = 12582912.0f; /* 1.5 · 2^23: adding it rounds to an integer */
    const float alive = x < -87.0f ? 0.0f : 1.0f;
    x = x < -87.0f ? -87.0f : x;
    const float k = (x * 1.44269504088896341f + round_big) - round_big;
    const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)k + 127) << 23; /* 2^k, k in [−126, 0] */
    float two_k;
    memcpy(&two_k, &bits, sizeof two_k);
    return p * two_k * alive;
}

/* z = mask + Σ_j share[j] · x[tokens[j]] */
VECTOR_CLONES static void
pool_row(float *restrict z, const float *restrict mask, const float *restrict x, const int64_t *tokens,
         const float *share, int64_t begin, int64_t end, Py_ssize_t n_vocab)
{
    if (mask)
        memcpy(z, mask, n_vocab * sizeof(float));
    else
        memset(z, 0, n_vocab * sizeof(float));
    for (int64_t j = begin; j < end; j++) {
        const float *restrict row = x + tokens[j] * n_vocab;
        const float s = share[tokens[j]];
#pragma omp simd
        for (Py_ssize_t c = 0; c < n_vocab; c++)
            z[c] += s * row[c];
    }
}

/* z_s (in place) -> softmax(z_s) − softmax(z_t); returns KL(softmax(z_t) ‖ softmax(z_s)). */
VECTOR_CLONES static double
kl_row(float *restrict z_s, float *restrict e_t, const float *restrict z_t, Py_ssize_t n_vocab)
{
    float max_s = -INFINITY, max_t = -INFINITY;
#pragma omp simd reduction(max : max_s, max_t)
    for (Py_ssize_t c = 0; c < n_vocab; c++) {
        max_s = z_s[c] > max_s ? z_s[c] : max_s;
        max_t = z_t[c] > max_t ? z_t[c] : max_t;
    }
    double sum_s = 0.0, sum_t = 0.0, cross = 0.0; /* Σ e_S, Σ e_T, Σ e_T (z_T − z_S) */
    for (Py_ssize_t block = 0; block < n_vocab; block += BLOCK) {
        const Py_ssize_t end = block + BLOCK < n_vocab ? block + BLOCK : n_vocab;
        float part_s = 0.0f, part_t = 0.0f, part_cross = 0.0f;
#pragma omp simd reduction(+ : part_s, part_t, part_cross)
        for (Py_ssize_t c = block; c < end; c++) {
            const float es = exp_nonpositive(z_s[c] - max_s), et = exp_nonpositive(z_t[c] - max_t);
            part_cross += et * (z_t[c] - z_s[c]);
            part_s += es;
            part_t += et;
            z_s[c] = es;
            e_t[c] = et;
        }
        sum_s += part_s;
        sum_t += part_t;
        cross += part_cross;
    }
    const float inv_s = (float)(1.0 / sum_s), inv_t = (float)(1.0 / sum_t);
#pragma omp simd
    for (Py_ssize_t c = 0; c < n_vocab; c++)
        z_s[c] = z_s[c] * inv_s - e_t[c] * inv_t;
    return cross / sum_t - ((double)max_t + log(sum_t)) + ((double)max_s + log(sum_s));
}

VECTOR_CLONES static void
scaled_copy(float *restrict out, const float *restrict in, float s, Py_ssize_t n)
{
#pragma omp simd
    for (Py_ssize_t c = 0; c < n; c++)
        out[c] = in[c] * s;
}

static int
clamp_threads(int threads, Py_ssize_t items)
{
    if (threads > items)
        threads = (int)items;
    return threads < 1 ? 1 : threads;
}

/* log Σ_c exp(x[c]), in float64 (the CE's log-normaliser of one token row). */
VECTOR_CLONES static double
lse_row(const float *restrict x, Py_ssize_t n_vocab)
{
    float top = -INFINITY;
#pragma omp simd reduction(max : top)
    for (Py_ssize_t c = 0; c < n_vocab; c++)
        top = x[c] > top ? x[c] : top;
    double sum = 0.0;
    for (Py_ssize_t block = 0; block < n_vocab; block += BLOCK) {
        const Py_ssize_t end = block + BLOCK < n_vocab ? block + BLOCK : n_vocab;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (Py_ssize_t c = block; c < end; c++)
            part += exp_nonpositive(x[c] - top);
        sum += part;
    }
    return (double)top + log(sum);
}

/* out += w · softmax(x) = w · exp(x − lse), lse = hi + lo (two floats: x − hi is exact near the top) */
VECTOR_CLONES static void
add_softmax_row(float *restrict out, const float *restrict x, float w, double lse, Py_ssize_t n_vocab)
{
    const float hi = (float)lse, lo = (float)(lse - (double)hi);
#pragma omp simd
    for (Py_ssize_t c = 0; c < n_vocab; c++)
        out[c] += w * exp_nonpositive((x[c] - hi) - lo);
}

/* A buffer of ``count`` items of ``itemsize`` bytes, or ValueError naming it. */
static int
check_size(Py_buffer *buf, Py_ssize_t count, Py_ssize_t itemsize, const char *name)
{
    if (buf->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, buf->len, count * itemsize);
        return -1;
    }
    return 0;
}

/* token_row (T,) int64 with values in [0, n_rows]: n_rows marks a token outside every row. */
static int
check_rows(const int64_t *token_row, Py_ssize_t n_tokens, Py_ssize_t n_rows)
{
    for (Py_ssize_t t = 0; t < n_tokens; t++) {
        if (token_row[t] < 0 || token_row[t] > n_rows) {
            PyErr_Format(PyExc_ValueError, "token_row[%zd] = %lld is outside [0, %zd]", t,
                         (long long)token_row[t], n_rows);
            return -1;
        }
    }
    return 0;
}

static PyObject *
span_kl(PyObject *self, PyObject *args)
{
    Py_buffer x, token_row, share, mask = {0}, z_t, diff, kl;
    PyObject *mask_obj;
    Py_ssize_t n_vocab;
    int threads;
    if (!PyArg_ParseTuple(args, "y*y*y*Oy*w*w*ni", &x, &token_row, &share, &mask_obj, &z_t, &diff, &kl,
                          &n_vocab, &threads))
        return NULL;
    int has_mask = mask_obj != Py_None;
    PyObject *result = NULL;
    int64_t *first_token = NULL, *tokens = NULL;
    float *work = NULL;
    if (has_mask && PyObject_GetBuffer(mask_obj, &mask, PyBUF_SIMPLE) < 0) {
        has_mask = 0;
        goto done;
    }
    const Py_ssize_t n_rows = kl.len / (Py_ssize_t)sizeof(double);
    const Py_ssize_t n_tokens = token_row.len / (Py_ssize_t)sizeof(int64_t);
    if (n_vocab < 1) {
        PyErr_SetString(PyExc_ValueError, "n_vocab must be positive");
        goto done;
    }
    if (check_size(&kl, n_rows, sizeof(double), "kl") ||
        check_size(&token_row, n_tokens, sizeof(int64_t), "token_row") ||
        check_size(&x, n_tokens * n_vocab, sizeof(float), "x") ||
        check_size(&share, n_tokens, sizeof(float), "share") ||
        (has_mask && check_size(&mask, n_vocab, sizeof(float), "mask")) ||
        check_size(&z_t, n_rows * n_vocab, sizeof(float), "z_t") ||
        check_size(&diff, n_rows * n_vocab, sizeof(float), "diff"))
        goto done;
    const int64_t *rows = token_row.buf;
    if (check_rows(rows, n_tokens, n_rows) < 0)
        goto done;
    /* each row's tokens in token order, a counting sort: row m's tokens end up in
     * tokens[first_token[m] .. first_token[m + 1]) (first_token[m + 2] counts row m, is summed, then
     * serves as row m's cursor while the tokens are placed) */
    first_token = calloc(n_rows + 2, sizeof(int64_t));
    tokens = malloc((n_tokens + 1) * sizeof(int64_t));
    threads = clamp_threads(threads, n_rows);
    work = malloc((size_t)threads * n_vocab * sizeof(float));
    if (!first_token || !tokens || !work) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_tokens; t++)
        if (rows[t] < n_rows)
            first_token[rows[t] + 2]++;
    for (Py_ssize_t m = 2; m < n_rows + 2; m++)
        first_token[m] += first_token[m - 1];
    for (Py_ssize_t t = 0; t < n_tokens; t++)
        if (rows[t] < n_rows)
            tokens[first_token[rows[t] + 1]++] = t;
    const float *xs = x.buf, *shares = share.buf, *offset = has_mask ? mask.buf : NULL, *teacher = z_t.buf;
    float *diffs = diff.buf;
    double *kls = kl.buf;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t m = 0; m < n_rows; m++) {
        float *z = diffs + m * n_vocab;
        pool_row(z, offset, xs, tokens, shares, first_token[m], first_token[m + 1], n_vocab);
        kls[m] = kl_row(z, work + (size_t)THREAD_NUM * n_vocab, teacher + m * n_vocab, n_vocab);
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    free(first_token);
    free(tokens);
    free(work);
    if (has_mask)
        PyBuffer_Release(&mask);
    PyBuffer_Release(&x);
    PyBuffer_Release(&token_row);
    PyBuffer_Release(&share);
    PyBuffer_Release(&z_t);
    PyBuffer_Release(&diff);
    PyBuffer_Release(&kl);
    return result;
}

static PyObject *
row_lse(PyObject *self, PyObject *args)
{
    Py_buffer x, rows, lse;
    Py_ssize_t n_vocab;
    int threads;
    if (!PyArg_ParseTuple(args, "y*y*w*ni", &x, &rows, &lse, &n_vocab, &threads))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n_picked = rows.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t n_tokens = n_vocab > 0 ? x.len / (Py_ssize_t)sizeof(float) / n_vocab : 0;
    if (n_vocab < 1) {
        PyErr_SetString(PyExc_ValueError, "n_vocab must be positive");
        goto done;
    }
    if (check_size(&x, n_tokens * n_vocab, sizeof(float), "x") ||
        check_size(&rows, n_picked, sizeof(int64_t), "rows") ||
        check_size(&lse, n_picked, sizeof(double), "lse") ||
        check_rows(rows.buf, n_picked, n_tokens - 1) < 0)
        goto done;
    threads = clamp_threads(threads, n_picked);
    const float *xs = x.buf;
    const int64_t *picked = rows.buf;
    double *out = lse.buf;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t r = 0; r < n_picked; r++)
        out[r] = lse_row(xs + picked[r] * n_vocab, n_vocab);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&lse);
    return result;
}

static PyObject *
spread_rows(PyObject *self, PyObject *args)
{
    Py_buffer diff, token_row, scale, grad, x = {0}, ce_weight = {0}, ce_lse = {0};
    PyObject *x_obj = Py_None, *weight_obj = Py_None, *lse_obj = Py_None;
    Py_ssize_t n_vocab;
    int threads, has_ce = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*w*ni|OOO", &diff, &token_row, &scale, &grad, &n_vocab, &threads, &x_obj,
                          &weight_obj, &lse_obj))
        return NULL;
    PyObject *result = NULL;
    if (x_obj != Py_None || weight_obj != Py_None || lse_obj != Py_None) {
        if (PyObject_GetBuffer(x_obj, &x, PyBUF_SIMPLE) < 0)
            goto done;
        if (PyObject_GetBuffer(weight_obj, &ce_weight, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&x);
            goto done;
        }
        if (PyObject_GetBuffer(lse_obj, &ce_lse, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&x);
            PyBuffer_Release(&ce_weight);
            goto done;
        }
        has_ce = 1;
    }
    const Py_ssize_t n_tokens = token_row.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t n_rows = n_vocab > 0 ? diff.len / (Py_ssize_t)sizeof(float) / n_vocab : 0;
    if (n_vocab < 1) {
        PyErr_SetString(PyExc_ValueError, "n_vocab must be positive");
        goto done;
    }
    if (check_size(&diff, n_rows * n_vocab, sizeof(float), "diff") ||
        check_size(&token_row, n_tokens, sizeof(int64_t), "token_row") ||
        check_size(&scale, n_tokens, sizeof(float), "scale") ||
        check_size(&grad, n_tokens * n_vocab, sizeof(float), "grad") ||
        check_rows(token_row.buf, n_tokens, n_rows) < 0 ||
        (has_ce && (check_size(&x, n_tokens * n_vocab, sizeof(float), "x") ||
                    check_size(&ce_weight, n_tokens, sizeof(float), "ce_weight") ||
                    check_size(&ce_lse, n_tokens, sizeof(double), "ce_lse"))))
        goto done;
    threads = clamp_threads(threads, n_tokens);
    const float *diffs = diff.buf, *scales = scale.buf;
    const int64_t *rows = token_row.buf;
    float *grads = grad.buf;
    const float *xs = has_ce ? x.buf : NULL, *weights = has_ce ? ce_weight.buf : NULL;
    const double *lses = has_ce ? ce_lse.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static)
    for (Py_ssize_t t = 0; t < n_tokens; t++) {
        float *out = grads + t * n_vocab;
        if (rows[t] >= n_rows)
            memset(out, 0, n_vocab * sizeof(float));
        else
            scaled_copy(out, diffs + rows[t] * n_vocab, scales[t], n_vocab);
        if (weights && weights[t] != 0.0f)
            add_softmax_row(out, xs + t * n_vocab, weights[t], lses[t], n_vocab);
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&diff);
    PyBuffer_Release(&token_row);
    PyBuffer_Release(&scale);
    PyBuffer_Release(&grad);
    if (has_ce) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&ce_weight);
        PyBuffer_Release(&ce_lse);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"span_kl", span_kl, METH_VARARGS,
     "span_kl(x, token_row, share, mask, z_t, diff, kl, n_vocab, threads): pooled span logits, the row "
     "KLs into kl and softmax(z_S) − softmax(z_T) into diff."},
    {"row_lse", row_lse, METH_VARARGS,
     "row_lse(x, rows, lse, n_vocab, threads): lse[r] = log Σ exp(x[rows[r]]), in float64."},
    {"spread_rows", spread_rows, METH_VARARGS,
     "spread_rows(diff, token_row, scale, grad, n_vocab, threads[, x, ce_weight, ce_lse]): grad[t] = "
     "scale[t] · diff[token_row[t]] (0 where token_row[t] is the row count) + ce_weight[t] · "
     "exp(x[t] − ce_lse[t])."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_span_kd",
                                    "Span logit KD's passes over the vocabulary, compiled.", -1, methods};

PyMODINIT_FUNC
PyInit__span_kd(void)
{
    return PyModule_Create(&module);
}
