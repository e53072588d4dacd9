// Engine-internal: the one place that reads llama.cpp's graph tensors for the tap.
// K and V are read at the cache write itself: the SET_ROWS node into "cache_k_l<il>" / "cache_v_l<il>",
// whose source is exactly the row written (K after RoPE and any k-norm; V), in f32 before conversion to
// the cache type. Hidden states: "l_out-<il>" (after layer il) and the embedding-layer input, read as the
// source of layer 0's attention RMS norm ("attn_norm-0" = mul(rms_norm(x0), w)).
#pragma once
#include <cstdint>
#include <vector>

#include "kvlens/tap.h"

struct ggml_tensor;

namespace kvlens::engine {

enum class TapKind { K, V, Hidden, EmbdInput };

// Which tensors a tap wants, per layer, resolved from a TapSpec.
struct TapFilter {
    std::vector<char> k, v, h;  // indexed by layer
    bool embd = false;
    bool any = false;
    void build(const TapSpec & spec, int n_layer);
    // True (and kind/layer set) when the graph node t is one the tap wants.
    bool match(const ggml_tensor * t, TapKind & kind, int & layer) const;
};

// The tensor whose data holds rows for (t, kind): t itself, or for EmbdInput the input of layer 0.
// Returns nullptr if the graph does not have the expected shape.
const ggml_tensor * data_tensor(const ggml_tensor * t, TapKind kind);

// Read a tensor from any backend (ggml_backend_tensor_get), any strides, f32/f16/bf16, into `out` as
// rows of `row` floats in logical order. Returns the number of rows (0 if the shape does not fit).
int read_rows_f32(const ggml_tensor * t, int row, std::vector<uint8_t> & scratch, std::vector<float> & out);

// llama.cpp's cb_eval for a tap owner `Impl` with members `bool active`, `TapFilter filter` and
// `void on_tensor(ggml_tensor *, TapKind, int layer)`: asks for exactly the nodes the filter matches and hands
// each computed one to on_tensor. Usage: cparams.cb_eval = &tap_eval_callback<Impl>.
template <class Impl> bool tap_eval_callback(ggml_tensor * t, bool ask, void * ud) {
    auto * self = static_cast<Impl *>(ud);
    TapKind kind;
    int layer;
    if (!self->active || !self->filter.match(t, kind, layer)) return !ask;  // not ours: skip, keep computing
    if (!ask) self->on_tensor(t, kind, layer);
    return true;
}

}  // namespace kvlens::engine
