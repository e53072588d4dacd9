// Embedder: tokenise, check lengths, pool every text through its own KvPooler (or draw the random baseline).
#include "kvlens/embed.h"

#include <chrono>
#include <cmath>

#include "kvlens/error.h"
#include "kvlens/session.h"

namespace kvlens {

Embedder::Embedder(std::shared_ptr<Model> model, const EmbedParams & params)
    : model_(std::move(model)), params_(params) {
    const ModelFacts & f = model_->facts();
    shape_ = PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd};
    layers_ = parse_layers(params_.pool.layers, f.n_layer);
    if (layers_.empty()) throw Error("no layers selected by '" + params_.pool.layers + "'");
    dim_ = pooled_dim(params_.pool, shape_, (int) layers_.size());
    if (params_.batch.n_ctx <= 0) {
        params_.batch.n_ctx = std::min(f.n_ctx_train > 0 ? f.n_ctx_train : 4096, 4096);
    }
}

std::vector<Token> Embedder::tokens(const std::string & text, int index, bool * truncated) const {
    if (text.empty()) throw Error("text " + std::to_string(index) + " is empty");
    std::vector<Token> t = model_->tokenize(text, true, params_.parse_special);
    if (t.empty()) throw Error("text " + std::to_string(index) + " gave no tokens");
    const int n_ctx = params_.batch.n_ctx;
    if (truncated) *truncated = false;
    if ((int) t.size() > n_ctx) {
        if (!params_.truncate) {
            throw Error("text " + std::to_string(index) + " has " + std::to_string(t.size()) +
                        " tokens, more than the context of " + std::to_string(n_ctx) + " (-c; or use --truncate)");
        }
        t.resize(n_ctx);
        if (truncated) *truncated = true;
    }
    return t;
}

EmbedRun Embedder::embed(const std::vector<std::string> & texts) {
    EmbedRun r;
    r.n_texts = (int) texts.size();
    r.dim = dim_;
    r.data.assign((size_t) r.n_texts * dim_, 0.f);
    const PoolConfig & cfg = params_.pool;
    std::vector<std::vector<Token>> toks(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        bool tr = false;
        toks[i] = tokens(texts[i], (int) i + 1, &tr);
        r.n_truncated += tr;
    }
    if (cfg.source == EmbedSource::Random) {
        auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < texts.size(); ++i) {
            auto v = random_embedding(cfg, dim_, texts[i]);
            std::copy(v.begin(), v.end(), r.data.begin() + i * dim_);
            r.stats.n_tokens += (long long) toks[i].size();
        }
        r.stats.n_texts = r.n_texts;
        r.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r;
    }
    if (!runner_) runner_ = std::make_unique<BatchRunner>(model_, params_.batch, pool_tap_spec(cfg, layers_));
    std::vector<std::unique_ptr<KvPooler>> poolers(texts.size());
    r.stats = runner_->run(
        toks,
        [&](int i) {
            poolers[i] = std::make_unique<KvPooler>(cfg, shape_, layers_);
            poolers[i]->set_range(0, (int) toks[i].size());
            return poolers[i].get();
        },
        [&](int i) {
            poolers[i]->result(r.data.data() + (size_t) i * dim_);
            poolers[i].reset();
        });
    // NaN / inf weights give NaN K/V rows: refuse instead of returning null embeddings
    for (size_t i = 0; i < r.data.size(); ++i)
        if (!std::isfinite(r.data[i]))
            throw Error("text " + std::to_string(i / dim_ + 1) +
                        ": its embedding is not finite (NaN or inf in the model's K/V rows or hidden states): the "
                        "model's weights are broken or overflow in this precision");
    return r;
}

std::vector<float> Embedder::embed_one(const std::string & text) {
    const PoolConfig & cfg = params_.pool;
    std::vector<Token> t = tokens(text, 1);
    if (cfg.source == EmbedSource::Random) return random_embedding(cfg, dim_, text);
    SessionParams sp;
    sp.n_ctx = params_.batch.n_ctx;
    sp.n_threads = params_.batch.n_threads;
    sp.flash_attn = params_.batch.flash_attn;
    Session s(model_, sp);
    s.set_tap(pool_tap_spec(cfg, layers_));
    KvPooler pooler(cfg, shape_, layers_);
    pooler.set_range(0, (int) t.size());
    s.subscribe(&pooler);
    // hidden pooling needs every token's last-layer output, which llama.cpp computes only for output tokens
    s.eval(t, /*all_logits=*/cfg.source == EmbedSource::Hidden);
    return pooler.result();
}

}  // namespace kvlens
