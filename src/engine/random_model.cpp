#include <algorithm>
#include "kvlens/random_model.h"

#include <sys/stat.h>

#include <cstdio>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"

namespace kvlens {

RandomModelSpec model_shape(const std::string & name) {
    RandomModelSpec s;
    if (name == "qwen3-0.6b") {
        s.arch = "qwen3", s.n_layer = 28, s.n_embd = 1024, s.n_head = 16, s.n_head_kv = 8, s.head_dim = 128, s.n_ff = 3072;
        s.rope_base = 1e6f;
    } else if (name == "qwen3-8b") {
        s.arch = "qwen3", s.n_layer = 36, s.n_embd = 4096, s.n_head = 32, s.n_head_kv = 8, s.head_dim = 128, s.n_ff = 12288;
        s.rope_base = 1e6f;
    } else if (name == "llama-3.1-8b") {
        s.arch = "llama", s.n_layer = 32, s.n_embd = 4096, s.n_head = 32, s.n_head_kv = 8, s.head_dim = 128, s.n_ff = 14336;
        s.rope_base = 5e5f, s.rms_eps = 1e-5f;
    } else if (name == "qwen2-7b") {
        s.arch = "qwen2", s.n_layer = 28, s.n_embd = 3584, s.n_head = 28, s.n_head_kv = 4, s.head_dim = 128, s.n_ff = 18944;
        s.rope_base = 1e6f;
    } else if (name == "r1-distill-qwen-14b") {
        s.arch = "qwen2", s.n_layer = 48, s.n_embd = 5120, s.n_head = 40, s.n_head_kv = 8, s.head_dim = 128, s.n_ff = 13824;
        s.rope_base = 1e6f, s.rms_eps = 1e-5f;
    } else {
        throw Error("unknown model shape '" + name + "' (qwen3-0.6b, qwen3-8b, llama-3.1-8b, qwen2-7b, r1-distill-qwen-14b)");
    }
    s.name = "random-" + name;
    return s;
}

namespace {

ggml_type parse_wtype(const std::string & t) {
    if (t == "f32") return GGML_TYPE_F32;
    if (t == "f16") return GGML_TYPE_F16;
    if (t == "q8_0") return GGML_TYPE_Q8_0;
    throw Error("unknown weight type '" + t + "' (f32, f16, q8_0)");
}

struct Writer {
    gguf_context * g;
    std::mt19937_64 rng;
    std::vector<std::vector<uint8_t>> blobs;  // tensor data kept alive until written
    std::vector<ggml_context *> ctxs;

    void add(const std::string & name, ggml_type type, std::vector<int64_t> ne, float mean, float std) {
        int64_t n = 1;
        for (auto d : ne) n *= d;
        std::vector<float> x(n);
        std::normal_distribution<float> nd(mean, std);
        for (auto & v : x) v = nd(rng);
        if (ne[0] % ggml_blck_size(type) != 0) type = GGML_TYPE_F32;
        ggml_init_params ip = {ggml_tensor_overhead() * 2, nullptr, true};
        ggml_context * ctx = ggml_init(ip);
        ctxs.push_back(ctx);
        ggml_tensor * t = ne.size() == 1 ? ggml_new_tensor_1d(ctx, type, ne[0]) : ggml_new_tensor_2d(ctx, type, ne[0], ne[1]);
        ggml_set_name(t, name.c_str());
        std::vector<uint8_t> data(ggml_nbytes(t));
        if (type == GGML_TYPE_F32) {
            std::memcpy(data.data(), x.data(), data.size());
        } else {
            ggml_quantize_chunk(type, x.data(), data.data(), 0, n / ne[0], ne[0], nullptr);
        }
        blobs.push_back(std::move(data));
        t->data = blobs.back().data();
        gguf_add_tensor(g, t);
    }
};

}  // namespace

void write_random_model(const RandomModelSpec & s, const std::string & path) {
    if (s.arch != "llama" && s.arch != "qwen2" && s.arch != "qwen3")
        throw Error("random models support llama, qwen2 and qwen3, not '" + s.arch + "'");
    if (s.n_head % s.n_head_kv != 0) throw Error("n_head must be a multiple of n_head_kv");
    ggml_type wt = parse_wtype(s.weight_type);

    gguf_init_params vp = {true, nullptr};
    gguf_context * vocab = gguf_init_from_file(s.vocab_gguf.c_str(), vp);
    if (!vocab) throw Error("cannot read vocabulary GGUF: " + s.vocab_gguf);
    int64_t tk = gguf_find_key(vocab, "tokenizer.ggml.tokens");
    if (tk < 0 || gguf_get_kv_type(vocab, tk) != GGUF_TYPE_ARRAY || gguf_get_arr_type(vocab, tk) != GGUF_TYPE_STRING) {
        gguf_free(vocab);
        throw Error("no tokenizer (tokenizer.ggml.tokens, an array of strings) in " + s.vocab_gguf);
    }
    int64_t n_vocab = gguf_get_arr_n(vocab, tk);

    gguf_context * g = gguf_init_empty();
    // tokenizer: every tokenizer.* key of the vocab file; its architecture keys are dropped
    gguf_set_kv(g, vocab);
    for (int64_t i = gguf_get_n_kv(g) - 1; i >= 0; --i) {
        std::string key = gguf_get_key(g, i);
        if (key.rfind("tokenizer.", 0) != 0) gguf_remove_key(g, key.c_str());
    }
    if (!s.add_tokens.empty() || !s.bos_token.empty()) {
        std::vector<std::string> toks;
        for (int64_t i = 0; i < n_vocab; ++i) toks.push_back(gguf_get_arr_str(vocab, tk, i));
        std::vector<int32_t> types(n_vocab, 1);
        const int64_t tt = gguf_find_key(vocab, "tokenizer.ggml.token_type");
        if (tt >= 0 && gguf_get_arr_n(vocab, tt) == (size_t) n_vocab && gguf_get_arr_type(vocab, tt) == GGUF_TYPE_INT32)
            std::memcpy(types.data(), gguf_get_arr_data(vocab, tt), n_vocab * sizeof(int32_t));
        for (auto & [text, type] : s.add_tokens) {
            if (std::find(toks.begin(), toks.end(), text) != toks.end()) continue;
            toks.push_back(text);
            types.push_back(type);
        }
        std::vector<const char *> ptrs;
        for (auto & t : toks) ptrs.push_back(t.c_str());
        gguf_set_arr_str(g, "tokenizer.ggml.tokens", ptrs.data(), ptrs.size());
        gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
        gguf_remove_key(g, "tokenizer.ggml.scores");
        n_vocab = (int64_t) toks.size();
        if (!s.bos_token.empty()) {
            auto it = std::find(toks.begin(), toks.end(), s.bos_token);
            if (it == toks.end()) throw Error("bos_token '" + s.bos_token + "' is not in the vocabulary");
            gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t) (it - toks.begin()));
        }
    }
    gguf_free(vocab);
    if (!s.chat_template.empty()) gguf_set_val_str(g, "tokenizer.chat_template", s.chat_template.c_str());
    if (s.add_bos >= 0) gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", s.add_bos != 0);
    const std::string a = s.arch;
    gguf_set_val_str(g, "general.architecture", a.c_str());
    gguf_set_val_str(g, "general.name", s.name.c_str());
    gguf_set_val_u32(g, (a + ".context_length").c_str(), s.n_ctx);
    gguf_set_val_u32(g, (a + ".embedding_length").c_str(), s.n_embd);
    gguf_set_val_u32(g, (a + ".block_count").c_str(), s.n_layer);
    gguf_set_val_u32(g, (a + ".feed_forward_length").c_str(), s.n_ff);
    gguf_set_val_u32(g, (a + ".attention.head_count").c_str(), s.n_head);
    gguf_set_val_u32(g, (a + ".attention.head_count_kv").c_str(), s.n_head_kv);
    gguf_set_val_u32(g, (a + ".attention.key_length").c_str(), s.head_dim);
    gguf_set_val_u32(g, (a + ".attention.value_length").c_str(), s.head_dim);
    gguf_set_val_u32(g, (a + ".rope.dimension_count").c_str(), s.head_dim);
    gguf_set_val_f32(g, (a + ".rope.freq_base").c_str(), s.rope_base);
    gguf_set_val_f32(g, (a + ".attention.layer_norm_rms_epsilon").c_str(), s.rms_eps);
    if (a == "llama") {
        gguf_set_val_u32(g, "llama.vocab_size", (uint32_t) n_vocab);
        if (gguf_find_key(g, "tokenizer.chat_template") < 0)  // llama.cpp detects llama3 from these markers
            gguf_set_val_str(g, "tokenizer.chat_template",
                             "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}");
    }

    Writer w{g, std::mt19937_64(s.seed), {}, {}};
    w.blobs.reserve(16 + 16 * s.n_layer);
    const float wstd = 1.0f / std::sqrt((float) s.n_embd);
    const int64_t q = (int64_t) s.n_head * s.head_dim, kv = (int64_t) s.n_head_kv * s.head_dim;
    w.add("token_embd.weight", wt == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16, {s.n_embd, n_vocab}, 0, 1.0f);
    w.add("output_norm.weight", GGML_TYPE_F32, {s.n_embd}, 1, 0.05f);
    w.add("output.weight", wt, {s.n_embd, n_vocab}, 0, wstd);
    for (int i = 0; i < s.n_layer; ++i) {
        std::string b = "blk." + std::to_string(i) + ".";
        w.add(b + "attn_norm.weight", GGML_TYPE_F32, {s.n_embd}, 1, 0.05f);
        w.add(b + "attn_q.weight", wt, {s.n_embd, q}, 0, wstd);
        w.add(b + "attn_k.weight", wt, {s.n_embd, kv}, 0, wstd);
        w.add(b + "attn_v.weight", wt, {s.n_embd, kv}, 0, wstd);
        if (a == "qwen2") {
            w.add(b + "attn_q.bias", GGML_TYPE_F32, {q}, 0, 0.1f);
            w.add(b + "attn_k.bias", GGML_TYPE_F32, {kv}, 0, 0.1f);
            w.add(b + "attn_v.bias", GGML_TYPE_F32, {kv}, 0, 0.1f);
        }
        if (a == "qwen3") {
            w.add(b + "attn_q_norm.weight", GGML_TYPE_F32, {s.head_dim}, 1, 0.05f);
            w.add(b + "attn_k_norm.weight", GGML_TYPE_F32, {s.head_dim}, 1, 0.05f);
        }
        w.add(b + "attn_output.weight", wt, {q, s.n_embd}, 0, 1.0f / std::sqrt((float) q));
        w.add(b + "ffn_norm.weight", GGML_TYPE_F32, {s.n_embd}, 1, 0.05f);
        w.add(b + "ffn_gate.weight", wt, {s.n_embd, s.n_ff}, 0, wstd);
        w.add(b + "ffn_up.weight", wt, {s.n_embd, s.n_ff}, 0, wstd);
        w.add(b + "ffn_down.weight", wt, {s.n_ff, s.n_embd}, 0, 1.0f / std::sqrt((float) s.n_ff));
    }
    // whole file or nothing (kvlens/atomic_file.h): a full disk never leaves a torn model to be loaded later
    try {
        write_file_atomic(path, [&](FILE * f) {
            if (!gguf_write_to_file_ptr(g, f, false)) throw Error("cannot write " + path);
        });
    } catch (...) {
        gguf_free(g);
        for (auto * c : w.ctxs) ggml_free(c);
        throw;
    }
    gguf_free(g);
    for (auto * c : w.ctxs) ggml_free(c);
}

namespace {

// About how large write_random_model's file will be (the weights; metadata is small), for the message before it.
double random_model_bytes(const RandomModelSpec & s) {
    int64_t n_vocab = 0;
    gguf_init_params vp = {true, nullptr};
    if (gguf_context * v = gguf_init_from_file(s.vocab_gguf.c_str(), vp)) {
        const int64_t tk = gguf_find_key(v, "tokenizer.ggml.tokens");
        if (tk >= 0 && gguf_get_kv_type(v, tk) == GGUF_TYPE_ARRAY) n_vocab = gguf_get_arr_n(v, tk);
        gguf_free(v);
    }
    const double per = s.weight_type == "f32" ? 4 : s.weight_type == "f16" ? 2 : 34.0 / 32;  // q8_0: 34 bytes / 32
    const double q = (double) s.n_head * s.head_dim, kv = (double) s.n_head_kv * s.head_dim, e = s.n_embd;
    const double layer = e * q * 2 + e * kv * 2 + 3 * e * s.n_ff;
    return n_vocab * e * (s.weight_type == "f32" ? 4 : 2) + n_vocab * e * per + s.n_layer * layer * per;
}

}  // namespace

std::string cached_random_model(const RandomModelSpec & s, const std::string & tag, const std::string & dir) {
    mkdir(dir.c_str(), 0755);
    const std::string path = dir + "/random-" + tag + "-" + s.weight_type + ".gguf";
    struct stat st{};
    if (stat(path.c_str(), &st) == 0 && st.st_size > 0) return path;
    check_writable(path);
    std::fprintf(stderr, "writing a random-weight %s model of about %.0f MB to %s (once; reused afterwards; -m MODEL to "
                 "use yours, --cache-dir DIR to put it elsewhere) ...\n",
                 s.weight_type.c_str(), random_model_bytes(s) / 1e6, path.c_str());
    write_random_model(s, path);
    return path;
}

std::string cached_shape_model(const std::string & shape, const std::string & wtype, const std::string & vocab_gguf,
                               const std::string & dir) {
    RandomModelSpec s = model_shape(shape);
    s.weight_type = wtype;
    s.vocab_gguf = vocab_gguf;
    return cached_random_model(s, shape, dir);
}

}  // namespace kvlens
