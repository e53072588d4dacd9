#include "tap_callback.h"

#include <cstdlib>
#include <cstring>

#include "ggml-backend.h"
#include "ggml.h"

namespace kvlens::engine {

void TapFilter::build(const TapSpec & spec, int n_layer) {
    k.assign(n_layer, 0);
    v.assign(n_layer, 0);
    h.assign(n_layer, 0);
    for (int l : spec.layers) {
        if (spec.kv) k[l] = v[l] = 1;
        if (spec.hidden) h[l] = 1;
    }
    embd = spec.hidden_embedding;
    any = embd || (!spec.layers.empty() && (spec.kv || spec.hidden));
}

static int parse_layer(const char * s) {
    if (*s < '0' || *s > '9') return -1;
    char * end = nullptr;
    long v = std::strtol(s, &end, 10);
    return *end == '\0' ? (int) v : -1;
}

// The cache write: SET_ROWS into a view of "cache_<tag>k_l<il>" / "cache_<tag>v_l<il>". Its src[0] is
// exactly what is written (K after RoPE/k-norm, V), before any conversion to the cache type.
static bool match_cache_write(const ggml_tensor * t, TapKind & kind, int & layer) {
    if (t->op != GGML_OP_SET_ROWS || !t->src[0]) return false;
    const ggml_tensor * base = t;  // the result is a view of the cache tensor
    while (base->view_src) base = base->view_src;
    const char * n = base->name;
    if (std::strncmp(n, "cache_", 6) != 0) return false;
    const char * l = std::strstr(n, "_l");
    while (l && std::strstr(l + 2, "_l")) l = std::strstr(l + 2, "_l");  // last "_l"
    if (!l || l - n < 7) return false;
    char kv = l[-1];
    if (kv != 'k' && kv != 'v') return false;
    kind = kv == 'k' ? TapKind::K : TapKind::V;
    layer = parse_layer(l + 2);
    return layer >= 0;
}

bool TapFilter::match(const ggml_tensor * t, TapKind & kind, int & layer) const {
    if (!any) return false;
    const char * n = t->name;
    if (t->op == GGML_OP_SET_ROWS) {
        if (!match_cache_write(t, kind, layer) || layer >= (int) k.size()) return false;
        return kind == TapKind::K ? k[layer] : v[layer];
    }
    if (n[0] == 'l' && std::strncmp(n, "l_out-", 6) == 0) {
        kind = TapKind::Hidden, layer = parse_layer(n + 6);
        return layer >= 0 && layer < (int) h.size() && h[layer];
    }
    if (embd && n[0] == 'a' && std::strcmp(n, "attn_norm-0") == 0) {
        kind = TapKind::EmbdInput, layer = kEmbeddingLayer;
        return true;
    }
    return false;
}

const ggml_tensor * data_tensor(const ggml_tensor * t, TapKind kind) {
    if (kind == TapKind::K || kind == TapKind::V) return t->src[0];
    if (kind == TapKind::Hidden) return t;
    // attn_norm-0 = mul(rms_norm(x0), weight)  (or rms_norm(x0) itself when the norm has no weight)
    const ggml_tensor * norm = t->op == GGML_OP_RMS_NORM ? t : t->src[0];
    if (!norm || norm->op != GGML_OP_RMS_NORM || !norm->src[0]) return nullptr;
    return norm->src[0];
}

int read_rows_f32(const ggml_tensor * t, int row, std::vector<uint8_t> & scratch, std::vector<float> & out) {
    const int64_t n = ggml_nelements(t);
    if (row <= 0 || n % row != 0) return 0;
    const ggml_type type = t->type;
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16) return 0;
    const size_t es = ggml_type_size(type);
    if ((size_t) t->nb[0] != es) return 0;
    const size_t bytes = ggml_nbytes(t);
    out.resize(n);
    const bool contiguous = ggml_is_contiguous(t);
    uint8_t * src;
    if (contiguous && type == GGML_TYPE_F32) {
        ggml_backend_tensor_get(const_cast<ggml_tensor *>(t), out.data(), 0, bytes);
        return (int) (n / row);
    }
    scratch.resize(bytes);
    ggml_backend_tensor_get(const_cast<ggml_tensor *>(t), scratch.data(), 0, bytes);
    src = scratch.data();
    float * dst = out.data();
    const int64_t ne0 = t->ne[0];
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1) {
                const uint8_t * p = src + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
                if (type == GGML_TYPE_F32) {
                    std::memcpy(dst, p, ne0 * sizeof(float));
                } else if (type == GGML_TYPE_F16) {
                    ggml_fp16_to_fp32_row((const ggml_fp16_t *) p, dst, ne0);
                } else {
                    ggml_bf16_to_fp32_row((const ggml_bf16_t *) p, dst, ne0);
                }
                dst += ne0;
            }
    return (int) (n / row);
}

}  // namespace kvlens::engine
