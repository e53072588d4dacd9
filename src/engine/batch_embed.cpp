// BatchRunner: several whole texts per llama_decode, one sequence id each, rows dispatched per sequence.
//
// One decode is exactly one ubatch (n_ubatch = n_batch, unified KV cache so llama.cpp splits "simple", in
// batch order), so row r of a tapped tensor is batch token r, whose (text, position) we laid out ourselves.
// The tap filter (tap_callback.h) picks the nodes; should a graph ever offer several matching nodes for one
// layer and kind, the last in graph order is the one that reaches the cache, so per layer we keep only the
// latest rows and hand them out after llama_decode returns.
#include "kvlens/batch_embed.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "ggml.h"
#include "kvlens/error.h"
#include "llama.h"
#include "tap_callback.h"

namespace kvlens {

using engine::TapKind;

struct BatchRunner::Impl {
    engine::TapFilter filter;
    int row = 0, n_embd = 0;
    bool active = false;
    std::vector<std::vector<float>> k, v, h;  // per layer: latest rows of this decode
    std::vector<int> nk, nv, nh;              // rows held per layer
    std::vector<uint8_t> scratch;
    std::vector<float> buf;
    // batch layout of the current decode
    std::vector<int> tok_text, tok_pos;
    llama_batch batch{};

    void clear_rows() {
        std::fill(nk.begin(), nk.end(), 0);
        std::fill(nv.begin(), nv.end(), 0);
        std::fill(nh.begin(), nh.end(), 0);
    }

    void on_tensor(const ggml_tensor * t, TapKind kind, int layer) {
        if (kind == TapKind::EmbdInput) return;  // not used for pooling
        const ggml_tensor * d = engine::data_tensor(t, kind);
        if (!d) return;
        const int width = kind == TapKind::Hidden ? n_embd : row;
        int n = engine::read_rows_f32(d, width, scratch, buf);
        if (n == 0) return;
        auto & dst = kind == TapKind::K ? k[layer] : kind == TapKind::V ? v[layer] : h[layer];
        auto & cnt = kind == TapKind::K ? nk[layer] : kind == TapKind::V ? nv[layer] : nh[layer];
        dst.assign(buf.begin(), buf.begin() + (size_t) n * width);  // the latest node of this name wins
        cnt = n;
    }

};

BatchRunner::BatchRunner(std::shared_ptr<Model> model, const BatchParams & p, const TapSpec & tap, bool pooled_mean)
    : model_(std::move(model)), impl_(new Impl), tap_(tap), pooled_(pooled_mean) {
    const ModelFacts & f = model_->facts();
    if (p.n_ctx < 0) throw Error("context size must be positive (-c)");
    if (p.n_batch <= 0) throw Error("batch size must be positive (-b)");
    if (p.n_seq <= 0 || p.n_seq > 256) throw Error("sequences per batch must be in 1..256");
    for (int l : tap_.layers) {
        if (l < 0 || l >= f.n_layer) throw Error("layer " + std::to_string(l) + " out of range");
    }
    if (tap_.kv && !tap_.layers.empty() && f.head_dim_k != f.head_dim_v) {
        throw Error("K and V head widths differ: not supported by the KV tap");
    }
    n_ctx_ = p.n_ctx > 0 ? p.n_ctx : std::min(f.n_ctx_train > 0 ? f.n_ctx_train : 4096, 4096);
    n_batch_ = std::max(p.n_batch, n_ctx_);
    n_seq_ = p.n_seq;
    impl_->row = f.kv_row();
    impl_->n_embd = f.n_embd;
    impl_->k.resize(f.n_layer);
    impl_->v.resize(f.n_layer);
    impl_->h.resize(f.n_layer);
    impl_->nk.assign(f.n_layer, 0);
    impl_->nv.assign(f.n_layer, 0);
    impl_->nh.assign(f.n_layer, 0);
    impl_->filter.build(pooled_ ? TapSpec{} : tap_, f.n_layer);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_batch_;  // the cache holds one batch; it is cleared after every decode
    cp.n_batch = cp.n_ubatch = n_batch_;
    cp.n_seq_max = n_seq_;
    cp.kv_unified = true;
    int nt = p.n_threads > 0 ? p.n_threads : (int) std::max(1u, std::thread::hardware_concurrency());
    cp.n_threads = cp.n_threads_batch = nt;
    if (p.flash_attn == "on") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    else if (p.flash_attn == "off") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    else if (p.flash_attn == "auto") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    else throw Error("unknown flash-attention mode '" + p.flash_attn + "' (on, off, auto)");
    cp.no_perf = true;
    if (pooled_) {
        cp.embeddings = true;
        cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    } else {
        cp.cb_eval = &engine::tap_eval_callback<Impl>;
        cp.cb_eval_user_data = impl_.get();
    }
    ctx_ = llama_init_from_model(model_->raw(), cp);
    if (!ctx_) throw Error("llama.cpp could not create a batch context of " + std::to_string(n_batch_) + " tokens");
    impl_->batch = llama_batch_init(n_batch_, 0, 1);
}

BatchRunner::~BatchRunner() {
    llama_batch_free(impl_->batch);
    if (ctx_) llama_free(ctx_);
}

int BatchRunner::pack(const std::vector<std::vector<Token>> & texts, int next, bool all_outputs) {
    llama_batch & b = impl_->batch;
    b.n_tokens = 0;
    impl_->tok_text.clear();
    impl_->tok_pos.clear();
    int n_packed = 0;
    const int n_vocab = model_->facts().n_vocab;
    for (int i = next; i < (int) texts.size() && n_packed < n_seq_; ++i) {
        const auto & t = texts[i];
        if (t.empty()) throw Error("text " + std::to_string(i + 1) + " has no tokens");
        if ((int) t.size() > n_ctx_) {
            throw Error("text " + std::to_string(i + 1) + " has " + std::to_string(t.size()) +
                        " tokens, more than the context of " + std::to_string(n_ctx_));
        }
        if (b.n_tokens + (int) t.size() > n_batch_) break;
        for (size_t p = 0; p < t.size(); ++p) {
            if (t[p] < 0 || t[p] >= n_vocab) throw Error("token id " + std::to_string(t[p]) + " outside the vocabulary");
            int j = b.n_tokens++;
            b.token[j] = t[p];
            b.pos[j] = (llama_pos) p;
            b.n_seq_id[j] = 1;
            b.seq_id[j][0] = n_packed;
            b.logits[j] = all_outputs;
            impl_->tok_text.push_back(i);
            impl_->tok_pos.push_back((int) p);
        }
        ++n_packed;
    }
    if (b.n_tokens > 0) b.logits[b.n_tokens - 1] = true;
    return n_packed;
}

BatchStats BatchRunner::run(const std::vector<std::vector<Token>> & texts, const ConsumerFor & consumer, const Done & done) {
    if (pooled_) throw Error("BatchRunner::run needs a tap context (pooled_mean = false)");
    BatchStats st;
    const int n_layer = model_->facts().n_layer;
    // the last layer's output is pruned to the output rows: capturing it needs every row as output
    const bool all_out = tap_.hidden && !tap_.layers.empty() && tap_.layers.back() == n_layer - 1;
    std::vector<TapConsumer *> cons;
    auto t0 = std::chrono::steady_clock::now();
    llama_memory_t mem = llama_get_memory(ctx_);
    for (int next = 0; next < (int) texts.size();) {
        int n = pack(texts, next, all_out);
        cons.assign(n, nullptr);
        for (int s = 0; s < n; ++s) cons[s] = consumer ? consumer(next + s) : nullptr;
        impl_->clear_rows();
        impl_->active = true;
        int rc = llama_decode(ctx_, impl_->batch);
        impl_->active = false;
        if (rc != 0) throw Error("llama_decode failed (code " + std::to_string(rc) + ")");
        const int nt = impl_->batch.n_tokens;
        const int row = impl_->row, ne = impl_->n_embd;
        for (int l : tap_.layers) {
            if (tap_.kv && (impl_->nk[l] != nt || impl_->nv[l] != nt)) {
                throw Error("tap: layer " + std::to_string(l) + " gave " + std::to_string(impl_->nk[l]) + "/" +
                            std::to_string(impl_->nv[l]) + " K/V rows for " + std::to_string(nt) + " tokens");
            }
            if (tap_.hidden && impl_->nh[l] != nt && !(l == n_layer - 1 && !all_out)) {
                throw Error("tap: layer " + std::to_string(l) + " gave " + std::to_string(impl_->nh[l]) +
                            " hidden rows for " + std::to_string(nt) + " tokens");
            }
            for (int r = 0; r < nt; ++r) {
                TapConsumer * c = cons[impl_->tok_text[r] - next];
                if (!c) continue;
                if (tap_.kv) {
                    c->on_kv(l, impl_->tok_pos[r], impl_->k[l].data() + (size_t) r * row,
                             impl_->v[l].data() + (size_t) r * row, row);
                }
                if (tap_.hidden) c->on_hidden(l, impl_->tok_pos[r], impl_->h[l].data() + (size_t) r * ne, ne);
            }
        }
        for (int s = 0; s < n; ++s) {
            llama_memory_seq_rm(mem, s, -1, -1);
            if (done) done(next + s);
        }
        st.n_tokens += nt;
        st.n_decodes++;
        next += n;
    }
    st.n_texts = (int) texts.size();
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

BatchStats BatchRunner::run_pooled(const std::vector<std::vector<Token>> & texts, std::vector<float> & out) {
    if (!pooled_) throw Error("BatchRunner::run_pooled needs a pooled_mean context");
    BatchStats st;
    const int ne = model_->facts().n_embd;
    out.assign((size_t) texts.size() * ne, 0.f);
    auto t0 = std::chrono::steady_clock::now();
    llama_memory_t mem = llama_get_memory(ctx_);
    for (int next = 0; next < (int) texts.size();) {
        int n = pack(texts, next, true);
        int rc = llama_decode(ctx_, impl_->batch);
        if (rc != 0) throw Error("llama_decode failed (code " + std::to_string(rc) + ")");
        for (int s = 0; s < n; ++s) {
            const float * e = llama_get_embeddings_seq(ctx_, s);
            if (!e) throw Error("llama.cpp returned no pooled embedding");
            std::copy(e, e + ne, out.begin() + (size_t) (next + s) * ne);
            llama_memory_seq_rm(mem, s, -1, -1);
        }
        st.n_tokens += impl_->batch.n_tokens;
        st.n_decodes++;
        next += n;
    }
    st.n_texts = (int) texts.size();
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace kvlens
