// Engine: N sequences on one context, continuous batching, the tap demultiplexed per sequence (kvlens/engine.h).
#include "kvlens/engine.h"

#include <algorithm>
#include <chrono>

#include "context.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "kvlens/error.h"
#include "llama.h"
#include "tap_callback.h"

namespace kvlens {

using engine::TapKind;

// During a decode the callback keeps, per layer and kind, the rows of the latest matching node (as BatchRunner);
// after llama_decode returns they are handed out per batch row to the owning sequence's consumers.
// Per-sequence caches (kv_unified = false): llama.cpp splits a decode into ubatches of whole sequences, each
// sequence's tokens together and in order; the callback then appends every ubatch's K/V rows and, from the K
// cache write's row indices (stream · cells + cell), the stream (= sequence) of each row.
struct Engine::Impl {
    engine::TapFilter filter;
    int row = 0, n_embd = 0;
    bool active = false;
    bool unified = true;
    llama_context_params cparams{};
    std::vector<std::vector<float>> k, v, h;
    std::vector<int> nk, nv, nh;
    std::vector<std::vector<int>> streams;  // per layer, non-unified: the stream of each K row
    std::vector<int64_t> idx;
    std::vector<float> e;  // embedding-layer input rows
    int ne = 0;
    std::vector<uint8_t> scratch;
    std::vector<float> buf;

    struct Slot {
        SeqJob * job = nullptr;
        llama_sampler * smpl = nullptr;
        std::vector<Token> pending;
        size_t off = 0;     // pending tokens already evaluated
        int n_past = 0;
        int out = -1;       // batch index of this slot's logits in the last decode
        bool last = false;  // finish once the pending tokens are evaluated
        bool greedy = false;
        std::vector<Token> cached;  // reuse_prefix: the tokens at positions 0.. of this slot's cache
    };
    std::vector<Slot> slots;
    llama_batch batch{};
    std::vector<int> tok_slot, tok_pos;
    std::vector<int> first_pos, seen;  // per slot: its first position in this decode (-1: none); rows handed out

    void clear_rows() {
        std::fill(nk.begin(), nk.end(), 0);
        std::fill(nv.begin(), nv.end(), 0);
        std::fill(nh.begin(), nh.end(), 0);
        for (auto & s : streams) s.clear();
        ne = 0;
    }
    // non-unified: the stream of each row the K cache write `t` stores (its row indices over all streams)
    bool read_streams(const ggml_tensor * t, int layer) {
        const ggml_tensor * ix = t->src[1];
        const ggml_tensor * base = t;
        while (base->view_src) base = base->view_src;
        const int64_t cells = base->ne[1];
        if (!ix || ix->type != GGML_TYPE_I64 || cells <= 0 || !ggml_is_contiguous(ix)) return false;
        idx.resize(ggml_nelements(ix));
        ggml_backend_tensor_get(const_cast<ggml_tensor *>(ix), idx.data(), 0, ggml_nbytes(ix));
        for (int64_t i : idx) streams[layer].push_back((int) (i / cells));
        return true;
    }
    void on_tensor(const ggml_tensor * t, TapKind kind, int layer) {
        const ggml_tensor * d = engine::data_tensor(t, kind);
        if (!d) return;
        const int width = (kind == TapKind::K || kind == TapKind::V) ? row : n_embd;
        const int n = engine::read_rows_f32(d, width, scratch, buf);
        if (n == 0) return;
        if (kind == TapKind::EmbdInput) {
            e.assign(buf.begin(), buf.begin() + (size_t) n * width);
            ne = n;
            return;
        }
        auto & dst = kind == TapKind::K ? k[layer] : kind == TapKind::V ? v[layer] : h[layer];
        auto & cnt = kind == TapKind::K ? nk[layer] : kind == TapKind::V ? nv[layer] : nh[layer];
        if (!unified && kind != TapKind::Hidden) {  // several ubatches per decode: append
            if (kind == TapKind::K && !read_streams(t, layer)) return;
            dst.resize((size_t) cnt * width);
            dst.insert(dst.end(), buf.begin(), buf.begin() + (size_t) n * width);
            cnt += n;
            return;
        }
        dst.assign(buf.begin(), buf.begin() + (size_t) n * width);  // the latest node of this name wins
        cnt = n;
    }
};

Engine::Engine(std::shared_ptr<Model> model, const EngineParams & p) : model_(std::move(model)), impl_(new Impl) {
    const ModelFacts & f = model_->facts();
    if (p.n_parallel < 1) throw Error("-np must be >= 1 (sequences decoded together)");
    if (p.n_parallel > 256) throw Error("-np must be at most 256");
    n_par_ = p.n_parallel;
    reuse_prefix_ = p.reuse_prefix;
    llama_context_params cp = engine::context_params(f, p.session, n_ctx_);
    n_ctx_seq_ = n_ctx_ / n_par_;
    if (n_ctx_seq_ < 2)
        throw Error("a context of " + std::to_string(n_ctx_) + " tokens (-c) cannot hold " + std::to_string(n_par_) +
                    " sequences (-np): raise -c or lower -np");
    n_batch_ = (int) cp.n_batch;
    cp.n_ubatch = cp.n_batch;  // unified: one decode = one ubatch, batch row r is tapped row r
    cp.n_seq_max = n_par_;
    impl_->row = f.kv_row();
    impl_->n_embd = f.n_embd;
    impl_->k.resize(f.n_layer);
    impl_->v.resize(f.n_layer);
    impl_->h.resize(f.n_layer);
    impl_->nk.assign(f.n_layer, 0);
    impl_->nv.assign(f.n_layer, 0);
    impl_->nh.assign(f.n_layer, 0);
    impl_->streams.resize(f.n_layer);
    impl_->filter.build(tap_, f.n_layer);
    impl_->slots.resize(n_par_);
    impl_->first_pos.assign(n_par_, -1);
    impl_->seen.assign(n_par_, 0);
    cp.cb_eval = &engine::tap_eval_callback<Impl>;
    cp.cb_eval_user_data = impl_.get();
    impl_->cparams = cp;
    make_context(wants_unified(tap_));
    impl_->batch = llama_batch_init(n_batch_, 0, 1);
}

// Each sequence its own cache (llama-server's layout with -np: attention reads only that sequence's cells), unless
// the tap reads hidden states, whose pruned last-layer rows carry no stream: those keep one unified cache.
bool Engine::wants_unified(const TapSpec & t) const {
    return n_par_ == 1 || (t.hidden && !t.layers.empty()) || t.hidden_embedding;
}

void Engine::make_context(bool unified) {
    if (ctx_) llama_free(ctx_), ctx_ = nullptr;
    llama_context_params cp = impl_->cparams;
    cp.kv_unified = unified;
    impl_->unified = unified;
    ctx_ = llama_init_from_model(model_->raw(), cp);
    if (!ctx_) throw Error("llama.cpp could not create a context of " + std::to_string(n_ctx_) + " tokens");
}

Engine::~Engine() {
    for (auto & s : impl_->slots)
        if (s.smpl) llama_sampler_free(s.smpl);
    llama_batch_free(impl_->batch);
    if (ctx_) llama_free(ctx_);
}

void Engine::set_tap(const TapSpec & spec) {
    const ModelFacts & f = model_->facts();
    tap_ = engine::validated_tap(spec, f);
    impl_->filter.build(tap_, f.n_layer);
    if (wants_unified(tap_) != impl_->unified) make_context(!impl_->unified);  // between runs: the cache is empty
}

std::vector<uint8_t> Engine::state_data(int seq) const {
    if (seq < 0 || seq >= n_par_) throw Error("no sequence " + std::to_string(seq));
    size_t n = llama_state_seq_get_size(ctx_, seq);
    std::vector<uint8_t> out(n);
    out.resize(llama_state_seq_get_data(ctx_, out.data(), n, seq));
    return out;
}

EngineStats Engine::run(const std::vector<SeqJob *> & jobs) {
    size_t i = 0;
    return run([&]() -> SeqJob * { return i < jobs.size() ? jobs[i++] : nullptr; });
}

EngineStats Engine::run(const std::function<SeqJob *()> & next) {
    using Slot = Impl::Slot;
    Impl & im = *impl_;
    EngineStats st;
    const auto t0 = std::chrono::steady_clock::now();
    const ModelFacts & f = model_->facts();
    const int n_vocab = f.n_vocab, n_layer = f.n_layer;
    llama_memory_t mem = llama_get_memory(ctx_);
    auto check_ids = [&](const std::vector<Token> & t) {
        for (Token x : t)
            if (x < 0 || x >= n_vocab) throw Error("token id " + std::to_string(x) + " outside the vocabulary");
    };
    auto finish = [&](int s, bool context) {
        Slot & sl = im.slots[s];
        SeqJob * j = sl.job;
        sl.job = nullptr;
        j->on_finish(context);
        if (!reuse_prefix_) llama_memory_seq_rm(mem, s, -1, -1);  // else kept for the next job's prefix
        llama_sampler_free(sl.smpl);
        sl.smpl = nullptr;
        sl.pending.clear();
    };
    // On any error every live sequence is dropped, so the engine stays usable.
    auto drop_all = [&]() {
        im.active = false;
        for (int s = 0; s < n_par_; ++s) {
            Slot & sl = im.slots[s];
            if (!sl.job) continue;
            sl.job = nullptr;
            llama_memory_seq_rm(mem, s, -1, -1);
            llama_sampler_free(sl.smpl);
            sl.smpl = nullptr;
            sl.pending.clear();
        }
        for (Slot & sl : im.slots) sl.cached.clear();
        if (reuse_prefix_) llama_memory_clear(mem, true);
    };
    // what a job said after an evaluation (sampled: the token just sampled, or null from on_evaluated)
    auto apply = [&](int s, const SeqStep & step, const Token * sampled) {
        Slot & sl = im.slots[s];
        if (step.stop) {
            finish(s, false);
            return;
        }
        if (step.rewind_to >= 0) {
            if (step.rewind_to > sl.n_past) throw Error("cannot rewind to position " + std::to_string(step.rewind_to));
            llama_memory_seq_rm(mem, s, step.rewind_to, -1);
            sl.n_past = step.rewind_to;
            if (reuse_prefix_) sl.cached.resize(step.rewind_to);
            for (TapConsumer * c : sl.job->consumers) c->on_rewind(step.rewind_to);
        }
        sl.pending.clear();
        sl.off = 0;
        if (step.keep_sampled && sampled) sl.pending.push_back(*sampled);
        check_ids(step.append);
        sl.pending.insert(sl.pending.end(), step.append.begin(), step.append.end());
        if (sl.pending.empty()) throw Error("a job went on with nothing to evaluate");
        sl.last = step.last;
        if (sl.n_past + (int) sl.pending.size() > n_ctx_seq_) finish(s, true);
    };
    try {
        while (true) {
            // every free slot asks for a job at every step (a server's queue fills while others decode)
            for (;;) {
                int s = 0;
                while (s < n_par_ && im.slots[s].job) ++s;
                if (s == n_par_) break;
                SeqJob * j = next();
                if (!j) break;
                // reuse_prefix: the prompt first (a program subscribes its consumers before its first eval), then the
                // slot; a job that taps gets an empty sequence, so its consumers see every row
                std::vector<Token> p;
                if (reuse_prefix_) p = j->prompt();
                const bool reuse = reuse_prefix_ && j->consumers.empty();
                auto common = [&](const std::vector<Token> & c) {
                    size_t n = 0;
                    while (n < c.size() && n + 1 < p.size() && c[n] == p[n]) ++n;  // one token left for the logits
                    return (int) n;
                };
                if (reuse) {  // the free slot whose cache holds the longest prefix of the prompt
                    int best = common(im.slots[s].cached);
                    for (int t = s + 1; t < n_par_; ++t)
                        if (!im.slots[t].job)
                            if (const int n = common(im.slots[t].cached); n > best) best = n, s = t;
                }
                Slot & sl = im.slots[s];
                sl.job = j;
                j->on_join(s);
                if (!reuse_prefix_) p = j->prompt();
                if (p.empty()) {  // nothing to do: the slot is free again
                    sl.job = nullptr;
                    j->on_finish(false);
                    continue;
                }
                check_ids(p);
                if ((int) p.size() >= n_ctx_seq_)
                    throw Error("a prompt of " + std::to_string(p.size()) + " tokens leaves no room in a sequence's " +
                                std::to_string(n_ctx_seq_) + " tokens (-c " + std::to_string(n_ctx_) + " / -np " +
                                std::to_string(n_par_) + ")");
                const int keep = reuse ? common(sl.cached) : 0;
                if (reuse_prefix_) {
                    llama_memory_seq_rm(mem, s, keep, -1);
                    sl.cached.resize(keep);
                }
                sl.pending = std::move(p);
                sl.off = keep;
                sl.n_past = keep;
                sl.out = -1;
                sl.last = false;
                sl.smpl = make_sampler(j->sampling);
                sl.greedy = is_greedy(j->sampling);
                st.n_prompt_tokens += (long) sl.pending.size() - keep;
                st.n_prompt_reused += keep;
            }
            int n_active = 0;
            for (auto & sl : im.slots) n_active += sl.job != nullptr;
            if (n_active == 0) break;
            st.max_active = std::max(st.max_active, n_active);

            // the batch: decoding sequences first in the budget (one token each), then prompt / control chunks.
            // Unified cache: laid out in that order. Per-sequence caches: laid out in slot order, each slot's tokens
            // together (llama.cpp's split_equal takes runs of consecutive sequence ids into one ubatch).
            llama_batch & b = im.batch;
            b.n_tokens = 0;
            im.tok_slot.clear();
            im.tok_pos.clear();
            std::fill(im.first_pos.begin(), im.first_pos.end(), -1);
            std::vector<int> take(n_par_, 0), order;
            int budget = n_batch_;
            for (int pass = 0; pass < 2 && budget > 0; ++pass)
                for (int s = 0; s < n_par_ && budget > 0; ++s) {
                    Slot & sl = im.slots[s];
                    if (!sl.job) continue;
                    const int left = (int) (sl.pending.size() - sl.off);
                    if (left <= 0 || (pass == 0) != (left == 1 && sl.n_past > 0)) continue;
                    take[s] = std::min(left, budget);
                    budget -= take[s];
                    order.push_back(s);
                }
            if (!im.unified) std::sort(order.begin(), order.end());
            for (int s : order) {
                Slot & sl = im.slots[s];
                im.first_pos[s] = sl.n_past;
                for (int i = 0; i < take[s]; ++i) {
                    const int j = b.n_tokens++;
                    b.token[j] = sl.pending[sl.off + i];
                    b.pos[j] = sl.n_past + i;
                    b.n_seq_id[j] = 1;
                    b.seq_id[j][0] = s;
                    b.logits[j] = sl.off + i + 1 == sl.pending.size();
                    im.tok_slot.push_back(s);
                    im.tok_pos.push_back(sl.n_past + i);
                }
                if (reuse_prefix_) sl.cached.insert(sl.cached.end(), sl.pending.begin() + sl.off, sl.pending.begin() + sl.off + take[s]);
                sl.off += take[s];
                sl.n_past += take[s];
                sl.out = sl.off == sl.pending.size() ? b.n_tokens - 1 : -1;
            }
            // slots not in this batch have nothing to sample
            std::vector<char> in_batch(n_par_, 0);
            for (int s : im.tok_slot) in_batch[s] = 1;
            for (int s = 0; s < n_par_; ++s)
                if (!in_batch[s]) im.slots[s].out = -1;

            im.clear_rows();
            im.active = true;
            const int rc = llama_decode(ctx_, b);
            im.active = false;
            if (rc != 0) throw Error("llama_decode failed (code " + std::to_string(rc) + ")");
            const int nt = b.n_tokens;
            st.n_decodes++;
            st.n_tokens += nt;
            ++total_decodes_;
            total_tokens_ += nt;

            // demultiplex the tapped rows: batch row r belongs to (tok_slot[r], tok_pos[r])
            auto each = [&](int r, auto && fn) {
                for (TapConsumer * c : im.slots[im.tok_slot[r]].job->consumers) fn(c);
            };
            if (tap_.hidden_embedding && im.ne == nt)
                for (int r = 0; r < nt; ++r)
                    each(r, [&](TapConsumer * c) { c->on_hidden(kEmbeddingLayer, im.tok_pos[r], im.e.data() + (size_t) r * im.n_embd, im.n_embd); });
            std::vector<int> outs;
            for (int r = 0; r < nt; ++r)
                if (b.logits[r]) outs.push_back(r);
            for (int l : tap_.layers) {
                if (tap_.kv) {
                    if (im.nk[l] != nt || im.nv[l] != nt)
                        throw Error("tap: layer " + std::to_string(l) + " gave " + std::to_string(im.nk[l]) + "/" +
                                    std::to_string(im.nv[l]) + " K/V rows for " + std::to_string(nt) + " tokens");
                    if (im.unified) {
                        for (int r = 0; r < nt; ++r)
                            each(r, [&](TapConsumer * c) {
                                c->on_kv(l, im.tok_pos[r], im.k[l].data() + (size_t) r * im.row, im.v[l].data() + (size_t) r * im.row, im.row);
                            });
                    } else {
                        // row r belongs to stream (= slot) streams[l][r]; a slot's rows come in position order
                        if ((int) im.streams[l].size() != nt) throw Error("tap: layer " + std::to_string(l) + " gave no row streams");
                        std::fill(im.seen.begin(), im.seen.end(), 0);
                        for (int r = 0; r < nt; ++r) {
                            const int s = im.streams[l][r];
                            if (s < 0 || s >= n_par_ || im.first_pos[s] < 0 || !im.slots[s].job)
                                throw Error("tap: layer " + std::to_string(l) + " row " + std::to_string(r) + " of no sequence in this decode");
                            const int pos = im.first_pos[s] + im.seen[s]++;
                            for (TapConsumer * c : im.slots[s].job->consumers)
                                c->on_kv(l, pos, im.k[l].data() + (size_t) r * im.row, im.v[l].data() + (size_t) r * im.row, im.row);
                        }
                    }
                }
                if (!tap_.hidden) continue;
                if (im.nh[l] == nt) {
                    for (int r = 0; r < nt; ++r)
                        each(r, [&](TapConsumer * c) { c->on_hidden(l, im.tok_pos[r], im.h[l].data() + (size_t) r * im.n_embd, im.n_embd); });
                } else if (l == n_layer - 1 && im.nh[l] == (int) outs.size()) {  // pruned to the output rows
                    for (size_t o = 0; o < outs.size(); ++o)
                        each(outs[o], [&](TapConsumer * c) {
                            c->on_hidden(l, im.tok_pos[outs[o]], im.h[l].data() + o * im.n_embd, im.n_embd);
                        });
                } else {
                    throw Error("tap: layer " + std::to_string(l) + " gave " + std::to_string(im.nh[l]) + " hidden rows for " +
                                std::to_string(nt) + " tokens");
                }
            }

            // sample every sequence whose pending tokens are all evaluated, and ask its job what comes next
            for (int s = 0; s < n_par_; ++s) {
                Slot & sl = im.slots[s];
                if (!sl.job || sl.out < 0) continue;
                const int idx = sl.out;
                sl.out = -1;
                if (sl.last) {
                    finish(s, false);
                    continue;
                }
                if (std::optional<SeqStep> pre = sl.job->on_evaluated()) {
                    apply(s, *pre, nullptr);
                    continue;
                }
                const float * logits = llama_get_logits_ith(ctx_, idx);
                const SoftmaxStats ss = softmax_stats(logits, n_vocab, -1);
                // greedy: the first maximum, as llama.cpp's greedy sampler picks it, without its n_vocab candidates
                const Token t = sl.greedy && ss.argmax >= 0 ? ss.argmax : llama_sampler_sample(sl.smpl, ctx_, idx);
                ++st.n_sampled;
                TokenEvent ev;
                ev.id = t;
                ev.piece = model_->piece(t, true);
                ev.pos = sl.n_past;
                ev.logits = logits;
                ev.n_vocab = n_vocab;
                ev.logprob = (float) ((double) logits[t] - ss.max_logit - ss.log_z);
                ev.maxprob = ss.maxprob;
                ev.entropy = ss.entropy_bits;
                apply(s, sl.job->on_token(ev), &t);
            }
        }
    } catch (...) {
        drop_all();
        throw;
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace kvlens
