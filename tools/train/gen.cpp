#include "gen.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "llama.h"

namespace kvlens::train {

void quiet_llama_logs() {
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
    }, nullptr);
}

Generator::Generator(const std::string & gguf_path, int threads, int n_ctx) {
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model_ = llama_model_load_from_file(gguf_path.c_str(), mp);
    if (!model_) throw std::runtime_error("cannot load model " + gguf_path);
    vocab_ = llama_model_get_vocab(model_);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;  // exact: the training graph keeps K/V in f32
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_) throw std::runtime_error("cannot create context for " + gguf_path);
}

Generator::~Generator() {
    llama_free(ctx_);
    llama_model_free(model_);
}

int Generator::n_vocab() const { return llama_vocab_n_tokens(vocab_); }

std::vector<int32_t> Generator::tokenize(const std::string & text) const {
    std::vector<int32_t> t(text.size() + 8);
    int n = llama_tokenize(vocab_, text.c_str(), int(text.size()), t.data(), int(t.size()), false, true);
    if (n < 0) throw std::runtime_error("tokenize failed");
    t.resize(n);
    return t;
}

GenOut Generator::generate(const std::string & prompt, int max_new) {
    llama_memory_clear(llama_get_memory(ctx_), true);
    std::vector<int32_t> toks = tokenize(prompt);
    GenOut out;
    llama_batch batch = llama_batch_get_one(toks.data(), int(toks.size()));
    const int nv = n_vocab();
    for (int i = 0; i < max_new; ++i) {
        if (llama_decode(ctx_, batch) != 0) throw std::runtime_error("llama_decode failed");
        const float * lg = llama_get_logits_ith(ctx_, -1);
        int32_t best = int32_t(std::max_element(lg, lg + nv) - lg);
        ++out.n_tokens;
        char buf[64];
        int n = llama_token_to_piece(vocab_, best, buf, sizeof buf, 0, true);
        if (n > 0) out.text.append(buf, n);
        if (llama_vocab_is_eog(vocab_, best)) {
            out.hit_eog = true;
            break;
        }
        toks.push_back(best);
        batch = llama_batch_get_one(&toks.back(), 1);
    }
    return out;
}

std::vector<float> Generator::logits_all(const std::vector<int32_t> & tokens) {
    llama_memory_clear(llama_get_memory(ctx_), true);
    llama_batch batch = llama_batch_init(int(tokens.size()), 0, 1);
    for (size_t i = 0; i < tokens.size(); ++i) {
        batch.token[i] = tokens[i];
        batch.pos[i] = int(i);
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = int(tokens.size());
    if (llama_decode(ctx_, batch) != 0) throw std::runtime_error("llama_decode failed");
    const int nv = n_vocab();
    std::vector<float> out(tokens.size() * size_t(nv));
    for (size_t i = 0; i < tokens.size(); ++i) {
        const float * lg = llama_get_logits_ith(ctx_, int(i));
        std::copy(lg, lg + nv, out.begin() + i * nv);
    }
    llama_batch_free(batch);
    return out;
}

}  // namespace kvlens::train
