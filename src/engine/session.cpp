// Session: one sequence on one llama.cpp context, with the KV tap installed as the eval callback.
#include "kvlens/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>

#include "ggml.h"
#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "llama.h"
#include "context.h"
#include "tap_callback.h"

namespace kvlens {

using engine::TapKind;

// Rows arrive per graph tensor (one ubatch of one layer). K and V of a layer come as two tensors in
// either order: rows wait in `pend` until their partner arrives, then go to every consumer once.
struct Session::Impl {
    const ModelFacts * facts = nullptr;
    engine::TapFilter filter;
    std::vector<TapConsumer *> consumers;
    bool active = false;  // only during our own llama_decode calls
    int row = 0;
    struct Pending {
        int pos = 0;
        std::vector<float> rows;
        int n() const { return (int) rows.size(); }
    };
    std::vector<Pending> pend_k, pend_v;
    std::vector<int> cur_k, cur_v, cur_h;  // next position per layer and kind
    int cur_e = 0;
    // The last layer's output is pruned to the output rows (tokens whose logits are computed): its hidden
    // rows belong to these positions, in order, unless every token of the batch is an output.
    int last_layer = -1;
    std::vector<int> out_pos;
    size_t out_cur = 0;
    bool all_out = false;
    std::vector<uint8_t> scratch;
    std::vector<float> buf;

    void begin_decode(int p0, std::vector<int> outputs, bool every_token_out) {
        out_pos = std::move(outputs);
        out_cur = 0;
        all_out = every_token_out;
        std::fill(cur_k.begin(), cur_k.end(), p0);
        std::fill(cur_v.begin(), cur_v.end(), p0);
        std::fill(cur_h.begin(), cur_h.end(), p0);
        cur_e = p0;
        for (auto & p : pend_k) p.rows.clear();
        for (auto & p : pend_v) p.rows.clear();
        active = true;
    }

    void flush_kv(int layer) {
        Pending & pk = pend_k[layer];
        Pending & pv = pend_v[layer];
        int nk = pk.n() / row, nv = pv.n() / row;
        int n = std::min(nk, nv);
        if (n == 0) return;
        for (int i = 0; i < n; ++i)
            for (TapConsumer * c : consumers)
                c->on_kv(layer, pk.pos + i, pk.rows.data() + (size_t) i * row, pv.rows.data() + (size_t) i * row, row);
        pk.rows.erase(pk.rows.begin(), pk.rows.begin() + (size_t) n * row);
        pv.rows.erase(pv.rows.begin(), pv.rows.begin() + (size_t) n * row);
        pk.pos += n;
        pv.pos += n;
    }

    void on_tensor(const ggml_tensor * t, TapKind kind, int layer) {
        const ggml_tensor * d = engine::data_tensor(t, kind);
        if (!d) return;
        const int width = (kind == TapKind::K || kind == TapKind::V) ? row : facts->n_embd;
        int n = engine::read_rows_f32(d, width, scratch, buf);
        if (n == 0) return;
        if (kind == TapKind::K || kind == TapKind::V) {
            Pending & p = kind == TapKind::K ? pend_k[layer] : pend_v[layer];
            int & cur = kind == TapKind::K ? cur_k[layer] : cur_v[layer];
            if (p.rows.empty()) p.pos = cur;
            p.rows.insert(p.rows.end(), buf.begin(), buf.begin() + (size_t) n * row);
            cur += n;
            flush_kv(layer);
        } else if (kind == TapKind::Hidden && layer == last_layer && !all_out && out_cur + n <= out_pos.size()) {
            for (int i = 0; i < n; ++i)
                for (TapConsumer * c : consumers) c->on_hidden(layer, out_pos[out_cur + i], buf.data() + (size_t) i * width, width);
            out_cur += n;
        } else {
            int & cur = kind == TapKind::EmbdInput ? cur_e : cur_h[layer];
            for (int i = 0; i < n; ++i)
                for (TapConsumer * c : consumers) c->on_hidden(layer, cur + i, buf.data() + (size_t) i * width, width);
            cur += n;
        }
    }

};

Session::Session(std::shared_ptr<Model> model, const SessionParams & p) : model_(std::move(model)), impl_(new Impl) {
    const ModelFacts & f = model_->facts();
    impl_->facts = &f;
    impl_->row = f.kv_row();
    impl_->pend_k.resize(f.n_layer);
    impl_->pend_v.resize(f.n_layer);
    impl_->cur_k.resize(f.n_layer);
    impl_->cur_v.resize(f.n_layer);
    impl_->cur_h.resize(f.n_layer);
    impl_->last_layer = f.n_layer - 1;
    impl_->filter.build(tap_, f.n_layer);

    int n_ctx = 0;
    llama_context_params cp = engine::context_params(f, p, n_ctx);
    n_ctx_ = n_ctx;  // llama.cpp may round its cache up; the user's -c is the limit
    cp.cb_eval = &engine::tap_eval_callback<Impl>;
    cp.cb_eval_user_data = impl_.get();
    ctx_ = llama_init_from_model(model_->raw(), cp);
    if (!ctx_) throw Error("llama.cpp could not create a context of " + std::to_string(n_ctx) + " tokens");
}

Session::~Session() {
    if (ctx_) llama_free(ctx_);
    if (sampler_) llama_sampler_free(sampler_);
}

void Session::set_tap(const TapSpec & spec) {
    const ModelFacts & f = model_->facts();
    tap_ = engine::validated_tap(spec, f);
    impl_->filter.build(tap_, f.n_layer);
}

void Session::subscribe(TapConsumer * c) {
    if (std::find(impl_->consumers.begin(), impl_->consumers.end(), c) == impl_->consumers.end())
        impl_->consumers.push_back(c);
}

void Session::unsubscribe(TapConsumer * c) {
    auto & v = impl_->consumers;
    v.erase(std::remove(v.begin(), v.end(), c), v.end());
}

void Session::set_sampling(const SamplingParams & sp) {
    llama_sampler * smpl = make_sampler(sp);
    if (sampler_) llama_sampler_free(sampler_);
    sampler_ = smpl;
}

llama_sampler * make_sampler(const SamplingParams & sp) {
    if (sp.top_k < 0) throw Error("--top-k must be >= 0");
    if (sp.top_p <= 0 || sp.top_p > 1) throw Error("--top-p must be in (0, 1]");
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (is_greedy(sp)) {
        llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    } else {
        if (sp.top_k > 0) llama_sampler_chain_add(smpl, llama_sampler_init_top_k(sp.top_k));
        llama_sampler_chain_add(smpl, llama_sampler_init_top_p(sp.top_p, 1));
        llama_sampler_chain_add(smpl, llama_sampler_init_temp(sp.temp));
        llama_sampler_chain_add(smpl, llama_sampler_init_dist(sp.seed));
    }
    return smpl;
}

int Session::n_ctx() const { return std::min(n_ctx_, (int) llama_n_ctx(ctx_)); }

void Session::eval(const std::vector<Token> & toks, bool all_logits) {
    if (toks.empty()) return;
    const int n_vocab = model_->facts().n_vocab;
    for (Token t : toks)
        if (t < 0 || t >= n_vocab) throw Error("token id " + std::to_string(t) + " outside the vocabulary");
    if (n_past() + (int) toks.size() > n_ctx())
        throw Error("sequence of " + std::to_string(n_past() + toks.size()) + " tokens does not fit the context of " +
                    std::to_string(n_ctx()) + " (-c)");
    const int n_batch = (int) llama_n_batch(ctx_);
    all_logits_.clear();
    for (size_t i0 = 0; i0 < toks.size(); i0 += n_batch) {
        int n = (int) std::min<size_t>(n_batch, toks.size() - i0);
        llama_batch b = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; ++i) {
            b.token[i] = toks[i0 + i];
            b.pos[i] = n_past() + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = all_logits || (i0 + i + 1 == toks.size());
        }
        b.n_tokens = n;
        std::vector<int> outs;
        for (int i = 0; i < n; ++i) if (b.logits[i]) outs.push_back(n_past() + i);
        impl_->begin_decode(n_past(), std::move(outs), all_logits);
        int rc = llama_decode(ctx_, b);
        impl_->active = false;
        llama_batch_free(b);
        if (rc != 0) throw Error("llama_decode failed (code " + std::to_string(rc) + ")");
        tokens_.insert(tokens_.end(), toks.begin() + i0, toks.begin() + i0 + n);
        if (all_logits) {
            for (int i = 0; i < n; ++i) {
                const float * l = llama_get_logits_ith(ctx_, i);
                all_logits_.insert(all_logits_.end(), l, l + n_vocab);
            }
        }
    }
    last_n_eval_ = (int) toks.size();
    has_all_logits_ = all_logits;
}

const float * Session::logits(int i) const {
    if (last_n_eval_ == 0) throw Error("no logits: nothing was evaluated");
    if (i < 0) i = last_n_eval_ - 1;
    if (i >= last_n_eval_) throw Error("logits index out of range");
    if (has_all_logits_) return all_logits_.data() + (size_t) i * model_->facts().n_vocab;
    if (i != last_n_eval_ - 1) throw Error("logits of earlier tokens need eval(..., all_logits=true)");
    return llama_get_logits_ith(ctx_, -1);
}

Token Session::sample() {
    if (!sampler_) set_sampling(SamplingParams{});
    if (last_n_eval_ == 0) throw Error("nothing to sample from: evaluate a prompt first");
    {
        // NaN / inf weights (or an overflow in this precision) make every logit NaN: the sampler would return some
        // token (<unk>) and everything downstream would look normal
        const float * l = logits(-1);
        const int n_vocab = model_->facts().n_vocab;
        for (int j = 0; j < n_vocab; ++j)
            if (!std::isfinite(l[j]))
                throw Error("the model's logits are not finite (NaN or inf at position " + std::to_string(n_past() - 1) +
                            "): its weights are broken or overflow in this precision");
    }
    if (has_all_logits_) {
        // sample from our copy of the last row
        const float * l = logits(-1);
        const int n_vocab = model_->facts().n_vocab;
        cand_.resize(n_vocab);
        for (int j = 0; j < n_vocab; ++j) cand_[j] = {j, l[j], 0.0f};
        llama_token_data_array arr = {cand_.data(), cand_.size(), -1, false};
        llama_sampler_apply(sampler_, &arr);
        Token t = arr.data[arr.selected].id;
        llama_sampler_accept(sampler_, t);
        return t;
    }
    return llama_sampler_sample(sampler_, ctx_, -1);
}

void Session::rewind(int pos) {
    if (pos < 0 || pos > n_past()) throw Error("cannot rewind to position " + std::to_string(pos));
    llama_memory_seq_rm(llama_get_memory(ctx_), 0, pos, -1);
    tokens_.resize(pos);
    last_n_eval_ = 0;
    for (TapConsumer * c : impl_->consumers) c->on_rewind(pos);
}

std::vector<uint8_t> Session::state_data() const {
    size_t n = llama_state_seq_get_size(ctx_, 0);
    std::vector<uint8_t> out(n);
    size_t got = llama_state_seq_get_data(ctx_, out.data(), n, 0);
    out.resize(got);
    return out;
}

namespace {

// exp(x) for x in [-87, 0] (a logit minus the maximum, clamped): Cody-Waite reduction x = n ln2 + r, a degree-6
// polynomial for e^r (Cephes' expf), 2^n from the exponent bits; relative error < 1e-7. Pure arithmetic, so the
// loop below vectorizes (std::exp is a libm call per element: 4x slower on a 152k vocabulary).
inline float exp_nonpositive(float x) {
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const int32_t bits = (int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

struct SoftmaxSums {
    float max;
    double z, zl;  // sum e_j, sum e_j (l_j - max)
};

// Eight float lanes, flushed into double every 512 logits; built for AVX-512, AVX2 and plain x86-64, the best
// one chosen at load time (the library is not built with -march=native, ggml is).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
SoftmaxSums softmax_sums(const float * logits, int n) {
    float mx = logits[0];
    for (int j = 1; j < n; ++j) mx = std::max(mx, logits[j]);
    constexpr int L = 8;
    float zb[L] = {}, zlb[L] = {};
    double z = 0, zl = 0;
    int j = 0;
    for (int blk = 0; j + L <= n; j += L) {
        for (int k = 0; k < L; ++k) {
            const float d = std::max(logits[j + k] - mx, -87.0f);  // e^-87 ~ 1.6e-38: a -inf logit counts as 0
            const float e = exp_nonpositive(d);
            zb[k] += e;
            zlb[k] += e * d;
        }
        if (++blk == 64) {
            blk = 0;
            for (int k = 0; k < L; ++k) {
                z += zb[k];
                zl += zlb[k];
                zb[k] = zlb[k] = 0;
            }
        }
    }
    for (int k = 0; k < L; ++k) {
        z += zb[k];
        zl += zlb[k];
    }
    for (; j < n; ++j) {
        const float d = std::max(logits[j] - mx, -87.0f);
        const float e = exp_nonpositive(d);
        z += e;
        zl += (double) e * d;
    }
    return {mx, z, zl};
}

}  // namespace

// One pass of exp: with e_j = exp(l_j - max) and z = sum e_j, p_j = e_j / z and
// H = -sum p_j log p_j = log z - sum e_j (l_j - max) / z (nats).
SoftmaxStats softmax_stats(const float * logits, int n, Token of) {
    const SoftmaxSums t = softmax_sums(logits, n);
    const double logz = std::log(t.z);
    SoftmaxStats s;
    s.maxprob = (float) (1.0 / t.z);
    s.entropy_bits = (float) ((logz - t.zl / t.z) / std::log(2.0));
    s.logprob_of = (of >= 0 && of < n) ? (float) ((double) logits[of] - t.max - logz) : NAN;
    s.argmax = Token(std::find(logits, logits + n, t.max) - logits);  // first maximum (n if the max is NaN)
    if (s.argmax >= n) s.argmax = -1;
    s.max_logit = t.max;
    s.log_z = logz;
    return s;
}

}  // namespace kvlens
