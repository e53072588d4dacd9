// KvClassifier GGUF I/O: weights as f32 tensors, settings and the LLM's fingerprint as metadata.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "ggml.h"
#include "gguf.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/probe.h"

namespace kvlens {

namespace {
constexpr const char * kArch = "kvlens-probe";
constexpr int kVersion = 1;

ggml_tensor * add_tensor(ggml_context * ctx, gguf_context * g, const char * name, const std::vector<float> & v,
                         int64_t ne0, int64_t ne1 = 1) {
    ggml_tensor * t = ne1 == 1 ? ggml_new_tensor_1d(ctx, GGML_TYPE_F32, ne0) : ggml_new_tensor_2d(ctx, GGML_TYPE_F32, ne0, ne1);
    ggml_set_name(t, name);
    std::memcpy(t->data, v.data(), ggml_nbytes(t));
    gguf_add_tensor(g, t);
    return t;
}

// A key's id, checked to exist and to hold `type` (gguf_get_val_* aborts on a type mismatch).
int64_t key(const gguf_context * g, const char * k, const std::string & path, gguf_type type) {
    int64_t id = gguf_find_key(g, k);
    if (id < 0) throw Error(path + ": not a kvlens classifier (no " + std::string(k) + ")");
    const gguf_type t = gguf_get_kv_type(g, id);
    if (t != type)
        throw Error(path + ": classifier key " + k + " holds a " + gguf_type_name(t) + ", expected a " + gguf_type_name(type));
    return id;
}
int32_t get_i32(const gguf_context * g, const char * k, const std::string & path) {
    return gguf_get_val_i32(g, key(g, k, path, GGUF_TYPE_INT32));
}
std::string get_str(const gguf_context * g, const char * k, const std::string & path) {
    return gguf_get_val_str(g, key(g, k, path, GGUF_TYPE_STRING));
}

std::vector<float> tensor(ggml_context * ctx, const char * name, size_t n, const std::string & path) {
    ggml_tensor * t = ggml_get_tensor(ctx, name);
    if (!t || t->type != GGML_TYPE_F32 || (size_t) ggml_nelements(t) != n)
        throw Error(path + ": classifier tensor '" + name + "' missing or of the wrong shape");
    const float * d = (const float *) t->data;
    return std::vector<float>(d, d + n);
}
}  // namespace

void KvClassifier::save(const std::string & path) const {
    if (empty()) throw Error("KvClassifier: nothing to save");
    const int n = meta_.input_dim, h = meta_.hidden;
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", kArch);
    gguf_set_val_str(g, "general.name", "kvlens KVClassifier");
    gguf_set_val_i32(g, "kvlens.probe.version", kVersion);
    gguf_set_val_str(g, "kvlens.probe.model.arch", meta_.model.arch.c_str());
    gguf_set_val_i32(g, "kvlens.probe.model.n_layer", meta_.model.n_layer);
    gguf_set_val_i32(g, "kvlens.probe.model.n_head_kv", meta_.model.n_head_kv);
    gguf_set_val_i32(g, "kvlens.probe.model.head_dim", meta_.model.head_dim);
    gguf_set_val_str(g, "kvlens.probe.window", meta_.window.describe().c_str());
    gguf_set_val_str(g, "kvlens.probe.variant", meta_.variant.c_str());
    gguf_set_val_str(g, "kvlens.probe.label_scheme", meta_.label_scheme.c_str());
    gguf_set_val_bool(g, "kvlens.probe.switch_aware", meta_.switch_aware);
    gguf_set_val_i32(g, "kvlens.probe.short_cutoff", meta_.short_cutoff);
    gguf_set_val_i32(g, "kvlens.probe.input_dim", n);
    gguf_set_val_i32(g, "kvlens.probe.hidden", h);
    gguf_set_val_i32(g, "kvlens.probe.n_train", meta_.n_train);
    gguf_set_val_i32(g, "kvlens.probe.n_val", meta_.n_val);
    gguf_set_val_f32(g, "kvlens.probe.val_mse", (float) meta_.val_mse);
    if (!meta_.cache_type_k.empty()) {
        gguf_set_val_str(g, "kvlens.probe.cache_type_k", meta_.cache_type_k.c_str());
        gguf_set_val_str(g, "kvlens.probe.cache_type_v", meta_.cache_type_v.c_str());
        gguf_set_val_str(g, "kvlens.probe.flash_attn", meta_.flash_attn.c_str());
    }
    if (!meta_.prompt.empty()) gguf_set_val_str(g, "kvlens.probe.prompt", meta_.prompt.c_str());

    size_t bytes = sizeof(float) * ((size_t) n * h + 2 * h + 1 + 2 * n) + ggml_tensor_overhead() * 8 + 1024;
    ggml_init_params ip = {bytes, nullptr, false};
    ggml_context * ctx = ggml_init(ip);
    add_tensor(ctx, g, "probe.mu", mu_, n);
    add_tensor(ctx, g, "probe.sd", sd_, n);
    add_tensor(ctx, g, "probe.w1", w1_, n, h);
    add_tensor(ctx, g, "probe.b1", b1_, h);
    add_tensor(ctx, g, "probe.w2", w2_, h);
    add_tensor(ctx, g, "probe.b2", std::vector<float>{b2_}, 1);
    // whole file or nothing (kvlens/atomic_file.h); gguf_write_to_file would not check the close
    try {
        write_file_atomic(path, [&](FILE * f) {
            if (!gguf_write_to_file_ptr(g, f, false)) throw Error("cannot write classifier " + path);
        });
    } catch (...) {
        gguf_free(g);
        ggml_free(ctx);
        throw;
    }
    gguf_free(g);
    ggml_free(ctx);
}

KvClassifier KvClassifier::load(const std::string & path) {
    {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw Error("cannot open classifier " + path);
        char magic[4] = {};
        f.read(magic, 4);
        if (std::memcmp(magic, "GGUF", 4) != 0) throw Error(path + ": not a GGUF file");
    }
    {  // header only first: tensor data that cannot fit the file would make gguf allocate its size (a crafted
       // file: petabytes, and ggml aborts) before it finds the file too short (found by tests/fuzz/fuzz_classifier)
        gguf_init_params hp = {true, nullptr};
        gguf_context * h = gguf_init_from_file(path.c_str(), hp);
        if (!h) throw Error(path + ": unreadable GGUF");
        size_t end = gguf_get_data_offset(h);
        bool overflow = false;
        for (int64_t i = 0; i < gguf_get_n_tensors(h); ++i) {
            const size_t off = gguf_get_tensor_offset(h, i), sz = gguf_get_tensor_size(h, i);
            const size_t e = gguf_get_data_offset(h) + off + sz;
            if (e < off || e < sz) overflow = true;
            end = std::max(end, e);
        }
        gguf_free(h);
        std::ifstream f(path, std::ios::binary | std::ios::ate);
        if (overflow || end > (size_t) f.tellg()) throw Error(path + ": classifier file is truncated or corrupt");
    }
    ggml_context * ctx = nullptr;
    gguf_init_params ip = {false, &ctx};
    gguf_context * g = gguf_init_from_file(path.c_str(), ip);
    if (!g) throw Error(path + ": unreadable GGUF");
    KvClassifier c;
    try {
        int64_t a = gguf_find_key(g, "general.architecture");
        if (a < 0 || gguf_get_kv_type(g, a) != GGUF_TYPE_STRING || std::string(gguf_get_val_str(g, a)) != kArch)
            throw Error(path + ": not a kvlens classifier (architecture is not " + kArch + ")");
        if (get_i32(g, "kvlens.probe.version", path) != kVersion) throw Error(path + ": unsupported classifier version");
        ProbeMeta & m = c.meta_;
        m.model.arch = get_str(g, "kvlens.probe.model.arch", path);
        m.model.n_layer = get_i32(g, "kvlens.probe.model.n_layer", path);
        m.model.n_head_kv = get_i32(g, "kvlens.probe.model.n_head_kv", path);
        m.model.head_dim = get_i32(g, "kvlens.probe.model.head_dim", path);
        m.window = WindowConfig::parse(get_str(g, "kvlens.probe.window", path));
        m.variant = get_str(g, "kvlens.probe.variant", path);
        m.label_scheme = get_str(g, "kvlens.probe.label_scheme", path);
        m.switch_aware = gguf_get_val_bool(g, key(g, "kvlens.probe.switch_aware", path, GGUF_TYPE_BOOL));
        m.short_cutoff = get_i32(g, "kvlens.probe.short_cutoff", path);
        m.input_dim = get_i32(g, "kvlens.probe.input_dim", path);
        m.hidden = get_i32(g, "kvlens.probe.hidden", path);
        m.n_train = get_i32(g, "kvlens.probe.n_train", path);
        m.n_val = get_i32(g, "kvlens.probe.n_val", path);
        m.val_mse = gguf_get_val_f32(g, key(g, "kvlens.probe.val_mse", path, GGUF_TYPE_FLOAT32));
        auto optional_str = [&](const char * k) {
            const int64_t id = gguf_find_key(g, k);
            if (id < 0) return std::string();
            if (gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) throw Error(path + ": " + k + " is not a string");
            return std::string(gguf_get_val_str(g, id));
        };
        m.cache_type_k = optional_str("kvlens.probe.cache_type_k");
        m.cache_type_v = optional_str("kvlens.probe.cache_type_v");
        m.flash_attn = optional_str("kvlens.probe.flash_attn");
        m.prompt = optional_str("kvlens.probe.prompt");
        if (m.input_dim <= 0 || m.hidden <= 0) throw Error(path + ": bad classifier shape");
        const size_t n = m.input_dim, h = m.hidden;
        c.mu_ = tensor(ctx, "probe.mu", n, path);
        c.sd_ = tensor(ctx, "probe.sd", n, path);
        c.w1_ = tensor(ctx, "probe.w1", n * h, path);
        c.b1_ = tensor(ctx, "probe.b1", h, path);
        c.w2_ = tensor(ctx, "probe.w2", h, path);
        c.b2_ = tensor(ctx, "probe.b2", 1, path)[0];
    } catch (...) {
        gguf_free(g);
        ggml_free(ctx);
        throw;
    }
    gguf_free(g);
    ggml_free(ctx);
    return c;
}

}  // namespace kvlens

namespace kvlens {

std::string KvClassifier::cache_mismatch(const std::string & type_k, const std::string & type_v,
                                         const std::string & flash_attn) const {
    if (meta_.cache_type_k.empty()) return "";
    if (meta_.cache_type_k == type_k && meta_.cache_type_v == type_v && meta_.flash_attn == flash_attn) return "";
    return "the classifier was trained on windows made with -ctk " + meta_.cache_type_k + " -ctv " + meta_.cache_type_v +
           " -fa " + meta_.flash_attn + "; this run uses -ctk " + type_k + " -ctv " + type_v + " -fa " + flash_attn +
           ": V rows differ by a few percent and scores can move by several points (docs/THINK.md)";
}

}  // namespace kvlens
