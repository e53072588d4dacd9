#include "context.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "ggml.h"
#include "kvlens/error.h"

namespace kvlens::engine {

ggml_type parse_cache_type(const std::string & s) {
    static const std::pair<const char *, ggml_type> types[] = {
        {"f32", GGML_TYPE_F32},   {"f16", GGML_TYPE_F16},   {"bf16", GGML_TYPE_BF16}, {"q8_0", GGML_TYPE_Q8_0},
        {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1}, {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1},
        {"iq4_nl", GGML_TYPE_IQ4_NL}};
    for (auto & [n, t] : types) if (s == n) return t;
    throw Error("unknown cache type '" + s + "' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)");
}

TapSpec validated_tap(const TapSpec & spec, const ModelFacts & f) {
    std::vector<int> seen;
    for (int l : spec.layers) {
        if (l < 0 || l >= f.n_layer)
            throw Error("layer " + std::to_string(l) + " out of range: the model has layers 0.." + std::to_string(f.n_layer - 1));
        if (std::find(seen.begin(), seen.end(), l) != seen.end()) throw Error("layer " + std::to_string(l) + " is listed twice");
        seen.push_back(l);
    }
    if (spec.kv && !spec.layers.empty() && f.head_dim_k != f.head_dim_v)
        throw Error("K and V head widths differ (" + std::to_string(f.head_dim_k) + " vs " + std::to_string(f.head_dim_v) +
                    "): not supported by the KV tap");
    TapSpec t = spec;
    std::sort(t.layers.begin(), t.layers.end());
    return t;
}

llama_context_params context_params(const ModelFacts & f, const SessionParams & p, int & n_ctx_out) {
    llama_context_params cp = llama_context_default_params();
    if (p.n_ctx < 0) throw Error("context size must be positive (-c)");
    if (p.n_batch <= 0 || p.n_ubatch <= 0) throw Error("batch sizes must be positive (-b, -ub)");
    const int n_ctx = p.n_ctx > 0 ? p.n_ctx : std::min(f.n_ctx_train > 0 ? f.n_ctx_train : 4096, 4096);
    cp.n_ctx = n_ctx;
    n_ctx_out = n_ctx;
    cp.n_batch = std::min(p.n_batch, n_ctx);
    cp.n_ubatch = std::min(p.n_ubatch, (int) cp.n_batch);
    const int nt = p.n_threads > 0 ? p.n_threads : (int) std::max(1u, std::thread::hardware_concurrency());
    cp.n_threads = cp.n_threads_batch = nt;
    if (p.flash_attn == "on") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    else if (p.flash_attn == "off") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    else if (p.flash_attn == "auto") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    else throw Error("unknown flash-attention mode '" + p.flash_attn + "' (on, off, auto)");
    cp.type_k = parse_cache_type(p.cache_type_k);
    cp.type_v = parse_cache_type(p.cache_type_v);
    if (ggml_is_quantized(cp.type_v) && cp.flash_attn_type == LLAMA_FLASH_ATTN_TYPE_DISABLED)
        throw Error("a quantized V cache (-ctv " + p.cache_type_v + ") needs flash attention (-fa on)");
    for (ggml_type t : {cp.type_k, cp.type_v})
        if (ggml_is_quantized(t) && f.head_dim_k % ggml_blck_size(t) != 0)
            throw Error("cache type block size does not divide the head width " + std::to_string(f.head_dim_k));
    cp.no_perf = true;
    return cp;
}

}  // namespace kvlens::engine
