#include "gen.h"

#include <algorithm>

#include "kvlens/log.h"
#include "kvlens/model.h"
#include "kvlens/sequence.h"
#include "kvlens/session.h"

namespace kvlens::train {

void quiet_llama_logs() {
    kvlens::set_verbosity(0);  // kvlens::Error reports failures as one line
    kvlens::init_logging();
}

SessionParams eval_session_params(int threads, int n_ctx) {
    SessionParams sp;
    sp.n_ctx = n_ctx;
    sp.n_batch = n_ctx;
    sp.n_ubatch = n_ctx;
    sp.n_threads = threads;
    sp.flash_attn = "off";
    sp.cache_type_k = "f32";  // exact: the training graph keeps K/V in f32
    sp.cache_type_v = "f32";
    return sp;
}

EngineParams eval_engine_params(int threads, int n_ctx, int n_parallel) {
    EngineParams ep;
    ep.session = eval_session_params(threads, n_ctx);
    ep.session.n_ctx = n_ctx * n_parallel;  // the whole cache: each sequence holds n_ctx (Engine::n_ctx_seq)
    ep.n_parallel = n_parallel;             // -b stays n_ctx: a decode carries at most one sequence's worth
    return ep;
}

GenOut generate_greedy(Sequence & seq, const std::string & prompt, int max_new) {
    Model & m = seq.model();
    seq.clear();
    seq.eval(m.tokenize(prompt, /*add_special=*/false, /*parse_special=*/true));
    GenOut out;
    for (int i = 0; i < max_new; ++i) {
        const Token best = seq.sample();  // the sequence's default sampler is greedy: the first maximum
        ++out.n_tokens;
        out.text += m.piece(best, /*special=*/true);
        if (m.is_eog(best)) {
            out.hit_eog = true;
            break;
        }
        if (i + 1 < max_new) seq.eval({best});
    }
    return out;
}

Generator::Generator(const std::string & gguf_path, int threads, int n_ctx) {
    ModelParams mp;
    mp.path = gguf_path;
    model_ = Model::load(mp);
    params_ = eval_session_params(threads, n_ctx);
    session_ = std::make_unique<Session>(model_, params_);
}

Generator::~Generator() = default;

int Generator::n_vocab() const { return model_->facts().n_vocab; }

std::vector<int32_t> Generator::tokenize(const std::string & text) const {
    return model_->tokenize(text, /*add_special=*/false, /*parse_special=*/true);
}

GenOut Generator::generate(const std::string & prompt, int max_new) { return generate_greedy(*session_, prompt, max_new); }

std::vector<float> Generator::logits_all(const std::vector<int32_t> & tokens) {
    session_->rewind(0);
    session_->eval(tokens, /*all_logits=*/true);
    const int nv = n_vocab();
    std::vector<float> out(tokens.size() * size_t(nv));
    for (size_t i = 0; i < tokens.size(); ++i) {
        const float * lg = session_->logits(int(i));
        std::copy(lg, lg + nv, out.begin() + i * nv);
    }
    return out;
}

}  // namespace kvlens::train
