// The training graph and llama.cpp must compute the same model: compare their logits on given sequences.
#include "check.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "gen.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"
#include "reasoner.h"

namespace kvlens::train {

std::vector<float> graph_logits(const std::string & gguf_path, const std::vector<int32_t> & tokens, int threads) {
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);
    Weights w;
    w.create(read_hparams(gguf_path, nullptr), backend);
    load_weights(w, gguf_path);
    const int T = int(tokens.size());
    ggml_init_params ip = {ggml_tensor_overhead() * 4096 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    BatchInputs in;
    in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    in.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    in.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, 1);
    ggml_tensor * logits = forward(ctx, w, in, T, 1);
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, logits);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    if (!ggml_gallocr_alloc_graph(ga, gf)) throw std::runtime_error("cannot allocate check graph");
    std::vector<int32_t> pos(T);
    std::vector<float> mask(size_t(T) * T, -INFINITY);
    for (int q = 0; q < T; ++q) {
        pos[q] = q;
        for (int k = 0; k <= q; ++k) mask[size_t(q) * T + k] = 0.0f;
    }
    ggml_backend_tensor_set(in.tokens, tokens.data(), 0, ggml_nbytes(in.tokens));
    ggml_backend_tensor_set(in.pos, pos.data(), 0, ggml_nbytes(in.pos));
    ggml_backend_tensor_set(in.mask, mask.data(), 0, ggml_nbytes(in.mask));
    ggml_backend_graph_compute(backend, gf);
    std::vector<float> out(ggml_nelements(logits));
    ggml_backend_tensor_get(logits, out.data(), 0, ggml_nbytes(logits));
    ggml_gallocr_free(ga);
    ggml_free(ctx);
    w.free();
    ggml_backend_free(backend);
    return out;
}

double max_rel_logit_diff(const std::vector<float> & a, const std::vector<float> & b) {
    if (a.size() != b.size() || a.empty()) throw std::runtime_error("logit sizes differ");
    double dmax = 0, vmax = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        dmax = std::max(dmax, double(std::fabs(a[i] - b[i])));
        vmax = std::max(vmax, double(std::fabs(b[i])));
    }
    return dmax / std::max(vmax, 1e-12);
}

double compare_with_llama(const std::string & gguf_path, const std::vector<std::string> & texts, int threads) {
    Generator gen(gguf_path, threads, read_hparams(gguf_path, nullptr).n_ctx);
    double worst = 0;
    for (const auto & t : texts) {
        const auto toks = gen.tokenize(t);
        worst = std::max(worst, max_rel_logit_diff(graph_logits(gguf_path, toks, threads), gen.logits_all(toks)));
    }
    return worst;
}

}  // namespace kvlens::train

#include "gguf.h"

namespace kvlens::train {

std::vector<std::string> unchanged_tensors(const std::string & path_a, const std::string & path_b) {
    ggml_context *ca = nullptr, *cb = nullptr;
    gguf_context * ga = gguf_init_from_file(path_a.c_str(), {false, &ca});
    gguf_context * gb = gguf_init_from_file(path_b.c_str(), {false, &cb});
    if (!ga || !gb) throw std::runtime_error("cannot read " + path_a + " or " + path_b);
    std::vector<std::string> same;
    for (ggml_tensor * t = ggml_get_first_tensor(ca); t; t = ggml_get_next_tensor(ca, t)) {
        ggml_tensor * u = ggml_get_tensor(cb, ggml_get_name(t));
        if (u && ggml_nbytes(u) == ggml_nbytes(t) && std::equal((const char *) t->data,
                                                               (const char *) t->data + ggml_nbytes(t), (const char *) u->data)) {
            same.push_back(ggml_get_name(t));
        }
    }
    gguf_free(ga);
    gguf_free(gb);
    ggml_free(ca);
    ggml_free(cb);
    return same;
}

}  // namespace kvlens::train

#include "data.h"

namespace kvlens::train {

// Packed-batch forward (B rows, several examples per row) vs one example at a time: must agree.
double packed_vs_single(const std::string & gguf_path, int threads) {
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);
    Weights w;
    w.create(read_hparams(gguf_path, nullptr), backend);
    load_weights(w, gguf_path);
    Tokenizer tok(gguf_path);
    std::vector<Example> ex;
    for (int i = 0; i < 6; ++i) {
        ex.push_back(make_example(tok, arith_generate(1 + i % 3, 100 + i), i % 2 ? Mode::Slow : Mode::Fast));
    }
    const int T = 96, B = 3;
    PackedBatch pb;
    const size_t used = pack(ex, 0, T, B, pb);
    ggml_init_params ip = {ggml_tensor_overhead() * 4096 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    BatchInputs in;
    in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T * B);
    in.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T * B);
    in.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
    ggml_tensor * logits = forward(ctx, w, in, T, B);
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, logits);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    ggml_gallocr_alloc_graph(ga, gf);
    ggml_backend_tensor_set(in.tokens, pb.tokens.data(), 0, ggml_nbytes(in.tokens));
    ggml_backend_tensor_set(in.pos, pb.pos.data(), 0, ggml_nbytes(in.pos));
    ggml_backend_tensor_set(in.mask, pb.mask.data(), 0, ggml_nbytes(in.mask));
    ggml_backend_graph_compute(backend, gf);
    const int V = w.hp.n_vocab;
    std::vector<float> all(ggml_nelements(logits));
    ggml_backend_tensor_get(logits, all.data(), 0, ggml_nbytes(logits));
    ggml_gallocr_free(ga);
    ggml_free(ctx);
    w.free();
    ggml_backend_free(backend);
    double worst = 0;
    for (size_t e = 0; e < used; ++e) {
        const auto & s = pb.spans[e];
        const auto single = graph_logits(gguf_path, ex[e].tokens, threads);
        std::vector<float> part(all.begin() + (size_t(s.row) * T + s.start) * V,
                                all.begin() + (size_t(s.row) * T + s.start + s.len) * V);
        worst = std::max(worst, max_rel_logit_diff(part, single));
    }
    return worst;
}

}  // namespace kvlens::train
