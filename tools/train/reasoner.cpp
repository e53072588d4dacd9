// The reasoner's weights, training forward graph and GGUF export — kept op-for-op equal to llama.cpp's qwen3
// graph (src/models/qwen3.cpp): RMS norms, GQA with q/k norms, NEOX RoPE, SwiGLU, untied output head.
#include "reasoner.h"

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

#include "ggml-alloc.h"
#include "gguf.h"
#include "vocab.h"

namespace kvlens::train {

void Weights::create(const HParams & h, ggml_backend_t backend) {
    hp = h;
    const int n_tensors = 3 + 11 * h.n_layer;
    ggml_init_params ip = {ggml_tensor_overhead() * size_t(n_tensors + 8), nullptr, true};
    ctx = ggml_init(ip);
    auto mk = [&](const std::string & name, int64_t ne0, int64_t ne1) {
        ggml_tensor * t = ne1 > 0 ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, ne0, ne1)
                                  : ggml_new_tensor_1d(ctx, GGML_TYPE_F32, ne0);
        ggml_set_name(t, name.c_str());
        all.push_back(t);
        return t;
    };
    const int64_t E = h.n_embd, Q = int64_t(h.n_head) * h.head_dim, KV = int64_t(h.n_head_kv) * h.head_dim;
    tok_embd = mk("token_embd.weight", E, h.n_vocab);
    layers.resize(h.n_layer);
    for (int i = 0; i < h.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        Layer & L = layers[i];
        L.attn_norm = mk(p + "attn_norm.weight", E, 0);
        L.wq = mk(p + "attn_q.weight", E, Q);
        L.wk = mk(p + "attn_k.weight", E, KV);
        L.wv = mk(p + "attn_v.weight", E, KV);
        L.wo = mk(p + "attn_output.weight", Q, E);
        L.q_norm = mk(p + "attn_q_norm.weight", h.head_dim, 0);
        L.k_norm = mk(p + "attn_k_norm.weight", h.head_dim, 0);
        L.ffn_norm = mk(p + "ffn_norm.weight", E, 0);
        L.ffn_gate = mk(p + "ffn_gate.weight", E, h.n_ff);
        L.ffn_up = mk(p + "ffn_up.weight", E, h.n_ff);
        L.ffn_down = mk(p + "ffn_down.weight", h.n_ff, E);
    }
    output_norm = mk("output_norm.weight", E, 0);
    output = mk("output.weight", E, h.n_vocab);
    buf = ggml_backend_alloc_ctx_tensors(ctx, backend);
    if (!buf) throw std::runtime_error("cannot allocate weights");
}

void Weights::init_random(uint64_t seed) {
    std::mt19937_64 rng(seed);
    const float resid_scale = 1.0f / std::sqrt(2.0f * hp.n_layer);
    for (ggml_tensor * t : all) {
        std::vector<float> v(ggml_nelements(t));
        const std::string name = ggml_get_name(t);
        if (ggml_n_dims(t) == 1) {
            std::fill(v.begin(), v.end(), 1.0f);  // norm weights
        } else {
            float sd = 0.02f;
            if (name.find("attn_output") != std::string::npos || name.find("ffn_down") != std::string::npos) {
                sd *= resid_scale;
            }
            std::normal_distribution<float> nd(0.0f, sd);
            for (float & x : v) x = nd(rng);
        }
        ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
    }
}

void Weights::mark_params(int from_layer) {
    trained.clear();
    for (ggml_tensor * t : all) {
        const std::string name = ggml_get_name(t);
        if (from_layer >= 0) {
            if (name.rfind("blk.", 0) != 0 || std::stoi(name.substr(4)) < from_layer) continue;
        }
        ggml_set_param(t);
        trained.push_back(t);
    }
}

void Weights::zero_residual_writes(int first) {
    for (int i = first; i < hp.n_layer; ++i) {
        for (ggml_tensor * t : {layers[i].wo, layers[i].ffn_down}) {
            std::vector<float> z(ggml_nelements(t), 0.0f);
            ggml_backend_tensor_set(t, z.data(), 0, ggml_nbytes(t));
        }
    }
}

void Weights::free() {
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx) ggml_free(ctx);
    buf = nullptr;
    ctx = nullptr;
    all.clear();
    layers.clear();
}

int64_t Weights::n_params() const {
    int64_t n = 0;
    for (auto * t : all) n += ggml_nelements(t);
    return n;
}

static ggml_tensor * rms(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

ggml_tensor * forward(ggml_context * ctx, const Weights & w, const BatchInputs & in, int T, int B) {
    const HParams & h = w.hp;
    const int N = T * B, D = h.head_dim, H = h.n_head, HK = h.n_head_kv;
    const float kq_scale = 1.0f / std::sqrt(float(D));
    ggml_tensor * x = ggml_get_rows(ctx, w.tok_embd, in.tokens);  // [E, N]
    for (int il = 0; il < h.n_layer; ++il) {
        const Layer & L = w.layers[il];
        ggml_tensor * cur = rms(ctx, x, L.attn_norm, h.rms_eps);
        ggml_tensor * q = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, L.wq, cur), D, H, N);
        ggml_tensor * k = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, L.wk, cur), D, HK, N);
        ggml_tensor * v = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, L.wv, cur), D, HK, N);
        q = rms(ctx, q, L.q_norm, h.rms_eps);
        k = rms(ctx, k, L.k_norm, h.rms_eps);
        q = ggml_rope_ext(ctx, q, in.pos, nullptr, D, GGML_ROPE_TYPE_NEOX, h.n_ctx, h.rope_base, 1.0f, 0.0f, 1.0f,
                          32.0f, 1.0f);
        k = ggml_rope_ext(ctx, k, in.pos, nullptr, D, GGML_ROPE_TYPE_NEOX, h.n_ctx, h.rope_base, 1.0f, 0.0f, 1.0f,
                          32.0f, 1.0f);
        // [D, heads, T, B] -> [D, T, heads*B]: row b*heads+h; mul_mat broadcasts KV head h/(H/HK) as llama.cpp
        q = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, q, D, H, T, B), 0, 2, 1, 3)),
                            D, T, H * B);
        k = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, k, D, HK, T, B), 0, 2, 1, 3)),
                            D, T, HK * B);
        // v^T: [T, D, HK*B]
        v = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, D, HK, T, B), 1, 2, 0, 3)),
                            T, D, HK * B);
        ggml_tensor * kq = ggml_mul_mat(ctx, k, q);  // [T_k, T_q, H*B]
        kq = ggml_soft_max_ext(ctx, ggml_reshape_4d(ctx, kq, T, T, H, B), in.mask, kq_scale, 0.0f);
        kq = ggml_reshape_3d(ctx, kq, T, T, H * B);
        ggml_tensor * o = ggml_mul_mat(ctx, v, kq);  // [D, T, H*B]
        o = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, o, D, T, H, B), 0, 2, 1, 3));  // [D, H, T, B]
        o = ggml_mul_mat(ctx, L.wo, ggml_reshape_2d(ctx, o, D * H, N));
        x = ggml_add(ctx, x, o);
        cur = rms(ctx, x, L.ffn_norm, h.rms_eps);
        ggml_tensor * g = ggml_swiglu_split(ctx, ggml_mul_mat(ctx, L.ffn_gate, cur), ggml_mul_mat(ctx, L.ffn_up, cur));
        x = ggml_add(ctx, x, ggml_mul_mat(ctx, L.ffn_down, g));
    }
    x = rms(ctx, x, w.output_norm, h.rms_eps);
    return ggml_mul_mat(ctx, w.output, x);  // [V, N]
}

void save_gguf(const Weights & w, const std::string & path, const std::map<std::string, int64_t> & extra) {
    const HParams & h = w.hp;
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "qwen3");
    gguf_set_val_str(g, "general.name", "kvlens-reasoner");
    gguf_set_val_str(g, "general.description",
                     "Tiny qwen3 reasoner for arithmetic with fast/slow (<think>) modes, trained by kvlens-train");
    gguf_set_val_u32(g, "general.file_type", 0);
    gguf_set_val_u32(g, "qwen3.context_length", h.n_ctx);
    gguf_set_val_u32(g, "qwen3.embedding_length", h.n_embd);
    gguf_set_val_u32(g, "qwen3.block_count", h.n_layer);
    gguf_set_val_u32(g, "qwen3.feed_forward_length", h.n_ff);
    gguf_set_val_u32(g, "qwen3.attention.head_count", h.n_head);
    gguf_set_val_u32(g, "qwen3.attention.head_count_kv", h.n_head_kv);
    gguf_set_val_u32(g, "qwen3.attention.key_length", h.head_dim);
    gguf_set_val_u32(g, "qwen3.attention.value_length", h.head_dim);
    gguf_set_val_f32(g, "qwen3.attention.layer_norm_rms_epsilon", h.rms_eps);
    gguf_set_val_f32(g, "qwen3.rope.freq_base", h.rope_base);
    for (const auto & [k, v] : extra) gguf_set_val_i64(g, k.c_str(), v);
    write_vocab(g, reasoner_vocab(), w.chat_template);
    std::vector<std::vector<uint8_t>> host(w.all.size());
    for (size_t i = 0; i < w.all.size(); ++i) {
        ggml_tensor * t = w.all[i];
        gguf_add_tensor(g, t);
        host[i].resize(ggml_nbytes(t));
        ggml_backend_tensor_get(t, host[i].data(), 0, host[i].size());
        gguf_set_tensor_data(g, ggml_get_name(t), host[i].data());
    }
    const std::string tmp = path + ".tmp";
    if (!gguf_write_to_file(g, tmp.c_str(), false)) {
        gguf_free(g);
        throw std::runtime_error("cannot write " + tmp);
    }
    gguf_free(g);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename to " + path);
}

static gguf_context * open_gguf(const std::string & path, ggml_context ** data_ctx) {
    gguf_init_params gp = {data_ctx == nullptr, data_ctx};
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw std::runtime_error("cannot read GGUF " + path);
    return g;
}

HParams read_hparams(const std::string & path, std::map<std::string, int64_t> * extra) {
    gguf_context * g = open_gguf(path, nullptr);
    auto u32 = [&](const char * k) {
        const int64_t id = gguf_find_key(g, k);
        if (id < 0) throw std::runtime_error(path + ": missing " + k);
        if (gguf_get_kv_type(g, id) != GGUF_TYPE_UINT32) throw std::runtime_error(path + ": " + k + " is not a uint32");
        return int(gguf_get_val_u32(g, id));
    };
    auto f32 = [&](const char * k) {
        const int64_t id = gguf_find_key(g, k);  // gguf_get_val_* abort on a missing key or another type
        if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_FLOAT32) throw std::runtime_error(path + ": missing float32 " + k);
        return gguf_get_val_f32(g, id);
    };
    HParams h;
    h.n_ctx = u32("qwen3.context_length");
    h.n_embd = u32("qwen3.embedding_length");
    h.n_layer = u32("qwen3.block_count");
    h.n_ff = u32("qwen3.feed_forward_length");
    h.n_head = u32("qwen3.attention.head_count");
    h.n_head_kv = u32("qwen3.attention.head_count_kv");
    h.head_dim = u32("qwen3.attention.key_length");
    h.rms_eps = f32("qwen3.attention.layer_norm_rms_epsilon");
    h.rope_base = f32("qwen3.rope.freq_base");
    const int64_t tok = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (tok < 0 || gguf_get_kv_type(g, tok) != GGUF_TYPE_ARRAY) throw std::runtime_error(path + ": no tokenizer.ggml.tokens array");
    h.n_vocab = int(gguf_get_arr_n(g, tok));
    if (extra) {
        for (int64_t i = 0; i < gguf_get_n_kv(g); ++i) {
            if (gguf_get_kv_type(g, i) == GGUF_TYPE_INT64) (*extra)[gguf_get_key(g, i)] = gguf_get_val_i64(g, i);
        }
    }
    gguf_free(g);
    return h;
}

void load_weights(Weights & w, const std::string & path) { load_weights_below(w, path, w.hp.n_layer); }

void load_weights_below(Weights & w, const std::string & path, int n_layers_in_file) {
    ggml_context * dctx = nullptr;
    gguf_context * g = open_gguf(path, &dctx);
    for (ggml_tensor * t : w.all) {
        const std::string name = ggml_get_name(t);
        if (name.rfind("blk.", 0) == 0 && std::stoi(name.substr(4)) >= n_layers_in_file) continue;
        ggml_tensor * s = ggml_get_tensor(dctx, ggml_get_name(t));
        if (!s || ggml_nbytes(s) != ggml_nbytes(t)) {
            throw std::runtime_error(path + ": missing or mis-shaped tensor " + ggml_get_name(t));
        }
        ggml_backend_tensor_set(t, s->data, 0, ggml_nbytes(t));
    }
    gguf_free(g);
    ggml_free(dctx);
}

std::string read_chat_template(const std::string & path) {
    gguf_context * g = open_gguf(path, nullptr);
    const int64_t id = gguf_find_key(g, "tokenizer.chat_template");
    const std::string t = id >= 0 ? gguf_get_val_str(g, id) : "";
    gguf_free(g);
    return t;
}

}  // namespace kvlens::train
