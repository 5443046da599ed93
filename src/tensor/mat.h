/* A weight matrix as stored in the mapped file: the unit every product
 * (matmul.h) and every model layer works with. */
#ifndef G4_MAT_H
#define G4_MAT_H

#include <stddef.h>
#include <stdint.h>

/* n_out rows of n_in elements (GGUF ne = {n_in, n_out[, n_mat]}). 3-D expert
 * tensors hold n_mat matrices back to back. */
typedef struct g4_mat {
    const void *data;
    int type;
    int64_t n_in, n_out, n_mat;
    size_t row_bytes;
    const char *name;
} g4_mat;

static inline const void *g4_mat_row(const g4_mat *m, int64_t mat, int64_t row) {
    return (const char *)m->data + ((size_t)mat * (size_t)m->n_out + (size_t)row) * m->row_bytes;
}

#endif
